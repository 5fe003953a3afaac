#include "ranktune/io/hub_download.h"

#include "digest.h"
#include "hf_home.h"
#include "http.h"
#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/file.h"
#include "ranktune/io/hub_cache.h"
#include "ranktune/io/json.h"

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <iterator>

namespace ranktune::io {
namespace {

namespace fs = std::filesystem;

struct RemoteFile {
  std::string name;    // path in the repository
  std::string blob;    // the blob's name in the cache: the sha256 (LFS) or the git blob sha1
  bool lfs = false;
  int64_t size = -1;
};

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

// The token huggingface_hub's get_token() finds: $HF_TOKEN (or the older $HUGGING_FACE_HUB_TOKEN),
// else the file `huggingface-cli login` writes: $HF_TOKEN_PATH, default $HF_HOME/token. Trimmed;
// "" when there is none.
std::string hub_token() {
  for (const char* name : {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}) {
    if (const std::string token = trim(env_or(name, "")); !token.empty()) return token;
  }
  const std::string path = env_or("HF_TOKEN_PATH", (std::filesystem::path(hf_home()) / "token").string());
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return "";
  try {
    return trim(read_file(path));
  } catch (const Error&) {
    return "";  // unreadable: as huggingface_hub, no token
  }
}

// Percent-encodes everything but unreserved characters (and '/' when `keep_slash`), as
// huggingface_hub's quote() does for revisions (safe='') and file names.
std::string quote(const std::string& text, bool keep_slash) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    const bool plain = std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/');
    if (plain) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// A repository path must stay inside the snapshot: relative, no "..", no empty component.
bool is_safe_name(const std::string& name) {
  if (name.empty() || name[0] == '/') return false;
  for (const auto& part : fs::path(name)) {
    if (part == ".." || part == "." || part.empty()) return false;
  }
  return true;
}

std::string normalize_etag(std::string etag) {
  if (starts_with(etag, "W/")) etag = etag.substr(2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
  return etag;
}

[[noreturn]] void fail_status(const HttpResponse& r, const std::string& url, const std::string& what) {
  const auto code = r.headers.find("x-error-code");
  const std::string hub_code = code == r.headers.end() ? "" : " (" + code->second + ")";
  if (r.status == 401 || r.status == 403) {
    throw Error(c10::str("the hub refused ", what, ": HTTP ", r.status, hub_code,
                         "; the repository may be gated or private: set HF_TOKEN to a token with access"),
                ErrorContext{url, "", -1});
  }
  if (r.status == 404) throw Error(c10::str("not found on the hub: ", what, hub_code), ErrorContext{url, "", -1});
  throw Error(c10::str("the hub answered HTTP ", r.status, hub_code, " for ", what), ErrorContext{url, "", -1});
}

// The commit and the files of the revision (model_info with files_metadata, as huggingface_hub asks).
std::pair<std::string, std::vector<RemoteFile>> list_files(const std::string& url, const std::vector<std::string>& headers,
                                                           const std::string& what) {
  const HttpResponse r = http_get(url, headers);
  if (r.status != 200) fail_status(r, url, what);
  const ordered_json info = parse_json(r.body, url);
  JsonFields fields(info, url);
  const std::string commit = fields.get_string("sha");
  const ordered_json& siblings = fields.get_list("siblings");
  std::vector<RemoteFile> files;
  for (size_t i = 0; i < siblings.size(); ++i) {
    JsonFields s(siblings[i], fields.at("siblings")[i]);
    RemoteFile f;
    f.name = s.get_string("rfilename");
    if (!is_safe_name(f.name)) s.fail("rfilename", "'" + f.name + "' would be written outside the snapshot");
    if (s.has_value("lfs")) {
      JsonFields lfs = s.get_object("lfs");
      f.lfs = true;
      f.blob = lfs.get_string("sha256");
      f.size = lfs.get_int("size");
    } else {
      f.blob = s.get_string("blobId");
      f.size = s.get_int("size");
    }
    // The blob name becomes a file name: only a hex digest is acceptable.
    const bool hex = !f.blob.empty() && f.blob.find_first_not_of("0123456789abcdef") == std::string::npos;
    if (!hex) s.fail(f.lfs ? "lfs.sha256" : "blobId", "'" + f.blob + "' is not a hex digest");
    files.push_back(std::move(f));
  }
  return {commit, files};
}

// Downloads one file into blobs/<blob> (resuming blobs/<blob>.incomplete), checked.
void fetch_blob(const RemoteFile& f, const std::string& url, std::vector<std::string> headers, const fs::path& blob,
                const std::string& commit) {
  const fs::path partial = blob.string() + ".incomplete";
  auto resume = fs::exists(partial) ? static_cast<int64_t>(fs::file_size(partial)) : 0;
  if (resume > f.size) {
    fs::remove(partial);
    resume = 0;
  }
  HttpResponse r;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::vector<std::string> h = headers;
    if (resume > 0) h.push_back("Range: bytes=" + std::to_string(resume) + "-");
    std::FILE* out = std::fopen(partial.c_str(), resume > 0 ? "ab" : "wb");
    if (out == nullptr) throw Error("cannot write the download", ErrorContext{partial.string(), "", -1});
    try {
      r = http_get(url, h, out);
    } catch (...) {
      std::fclose(out);
      throw;  // the partial file stays, to be resumed
    }
    std::fclose(out);
    // A server that ignores Range sends the whole file again after the partial: start over once.
    if (r.status == 200 && resume > 0) {
      resume = 0;
      continue;
    }
    break;
  }
  const bool complete_already = r.status == 416 && resume == f.size;
  if (r.status != 200 && r.status != 206 && !complete_already) fail_status(r, url, "file '" + f.name + "'");
  const auto reject = [&](const std::string& why) {
    fs::remove(partial);
    throw Error(c10::str("'", f.name, "' rejected: ", why, "; the download was deleted"), ErrorContext{url, "", -1});
  };
  if (!complete_already) {
    const auto linked = r.headers.find("x-linked-etag");
    const auto plain = r.headers.find("etag");
    const std::string etag = linked != r.headers.end() ? linked->second : plain != r.headers.end() ? plain->second : "";
    if (!etag.empty() && normalize_etag(etag) != f.blob) {
      reject("the server's ETag " + normalize_etag(etag) + " is not the file list's " + f.blob);
    }
    const auto repo_commit = r.headers.find("x-repo-commit");
    if (repo_commit != r.headers.end() && repo_commit->second != commit) {
      reject("the server sent commit " + repo_commit->second + ", not " + commit);
    }
  }
  const auto size = static_cast<int64_t>(fs::file_size(partial));
  if (size != f.size) reject(c10::str("size ", size, " bytes, expected ", f.size));
  const std::string digest = f.lfs ? sha256_file(partial.string()) : git_blob_sha1_file(partial.string());
  if (digest != f.blob) reject(c10::str(f.lfs ? "sha256 " : "git blob sha1 ", digest, " does not match the hub's ", f.blob));
  fs::rename(partial, blob);
}

// Each file not yet in the snapshot: its blob fetched (unless another snapshot has it), then linked.
void fetch_files(const std::vector<RemoteFile>& files, const std::string& resolve_url, const std::vector<std::string>& headers,
                 const fs::path& dir, const fs::path& snapshot, const std::string& commit, const HubDownloadOptions& options) {
  for (const RemoteFile& f : files) {
    const fs::path pointer = snapshot / f.name;
    if (fs::exists(pointer)) {
      if (options.log) options.log(f.name + ": in the cache");
      continue;
    }
    const fs::path blob = dir / "blobs" / f.blob;
    if (!fs::exists(blob)) {
      if (options.log) options.log(c10::str(f.name, ": downloading ", f.size, " bytes"));
      fetch_blob(f, resolve_url + quote(f.name, true), headers, blob, commit);
    }
    // snapshots/<commit>/<a/b/file> -> ../../(../ per directory level)blobs/<hash>, as huggingface_hub links.
    fs::create_directories(pointer.parent_path());
    if (fs::is_symlink(pointer)) fs::remove(pointer);  // dangling: its blob was deleted
    const fs::path relative(f.name);
    fs::path up = "../..";
    for (auto depth = std::distance(relative.begin(), relative.end()); depth > 1; --depth) up /= "..";
    fs::create_symlink(up / "blobs" / f.blob, pointer);
  }
}

}  // namespace

std::string download_snapshot(const std::string& repo_id, const HubDownloadOptions& options) {
  const std::optional<HubRepo> repo = parse_hub_repo(repo_id);
  RANKTUNE_CHECK(repo && repo->revision == "main" && repo_id.find('@') == std::string::npos, "'", repo_id,
                 "' is not a hub repository name (org/name; give the revision separately)");
  std::string endpoint = options.endpoint.empty() ? env_or("HF_ENDPOINT", "https://huggingface.co") : options.endpoint;
  while (ends_with(endpoint, "/")) endpoint.pop_back();
  const std::string token = options.token.empty() ? hub_token() : options.token;
  std::vector<std::string> headers;
  if (!token.empty()) headers.push_back("Authorization: Bearer " + token);
  const std::string cache = options.cache_dir.empty() ? hub_cache_dir() : options.cache_dir;
  HubRepo target{repo_id, options.revision};

  const std::string what = "model " + repo_id + " at revision " + options.revision;
  const std::string api = endpoint + "/api/models/" + repo_id + "/revision/" + quote(options.revision, false) + "?blobs=true";
  const auto [commit, files] = list_files(api, headers, what);
  const bool hex = commit.size() == 40 && commit.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!hex) throw Error("the hub's answer has no commit hash ('sha': '" + commit + "')", ErrorContext{api, "sha", -1});

  const fs::path dir = hub_repo_dir(target, cache);
  const fs::path snapshot = dir / "snapshots" / commit;
  fs::create_directories(dir / "blobs");
  try {
    fetch_files(files, endpoint + "/" + repo_id + "/resolve/" + commit + "/", headers, dir, snapshot, commit, options);
  } catch (...) {
    // Directories this download created and left empty go too (a partial file stays, to resume).
    std::error_code ignored;
    for (const fs::path& d : {snapshot, dir / "snapshots", dir / "blobs", dir}) fs::remove(d, ignored);
    throw;
  }
  if (options.revision != commit) {
    const fs::path ref = dir / "refs" / options.revision;
    fs::create_directories(ref.parent_path());
    write_file_atomic(ref.string(), commit);
  }
  return snapshot.string();
}

std::string download_if_missing(const std::string& name_or_path, HubDownloadOptions options) {
  if (fs::exists(name_or_path)) return name_or_path;
  const std::optional<HubRepo> repo = parse_hub_repo(name_or_path);
  RANKTUNE_CHECK_CTX(repo.has_value(), (ErrorContext{name_or_path, "model.download", -1}),
                     "no such directory, and not a hub name (org/name or org/name@revision) to download");
  const std::string cache = options.cache_dir.empty() ? hub_cache_dir() : options.cache_dir;
  if (auto snapshot = find_hub_snapshot(*repo, cache)) return *snapshot;
  options.revision = repo->revision;
  return download_snapshot(repo->repo_id, options);
}

}  // namespace ranktune::io
