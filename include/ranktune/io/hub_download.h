#pragma once
// Downloads a model repository from the Hugging Face Hub into the local cache, in huggingface_hub's
// layout (hub_cache.h), so that it then resolves offline:
//   GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true   the commit and the file list
//   GET {endpoint}/{repo}/resolve/{commit}/{file}                     each file
// Each file goes to blobs/<hash>.incomplete (a partial one from an interrupted download is resumed
// with "Range: bytes=N-"), is checked against the hub's digest (the sha256 of LFS files, the git
// blob sha1 of the others) and the ETag the server sent, then renamed to blobs/<hash> and linked
// from snapshots/<commit>/<file>. A file whose digest does not match is deleted and the download
// fails naming it; refs/<revision> is written only when every file is in place.
//
//   std::string dir = io::download_snapshot("Qwen/Qwen2.5-0.5B-Instruct");

#include <functional>
#include <string>

namespace ranktune::io {

struct HubDownloadOptions {
  std::string revision = "main";  // branch, tag or commit hash
  std::string endpoint;           // "": $HF_ENDPOINT, else https://huggingface.co
  std::string token;              // "": $HF_TOKEN (sent as "Authorization: Bearer ...")
  std::string cache_dir;          // "": hub_cache_dir()
  std::function<void(const std::string&)> log;  // one line per file (optional)
};

// Every file of `repo_id` at the revision, into the cache (files already there are not fetched
// again). Returns the snapshot directory.
std::string download_snapshot(const std::string& repo_id, const HubDownloadOptions& options = {});

// For `model.download: true`: `name_or_path` when it is a local path or already in the cache (no
// network); else the download of org/name[@revision]. Returns what resolve_pretrained returns.
std::string download_if_missing(const std::string& name_or_path, HubDownloadOptions options = {});

}  // namespace ranktune::io
