#pragma once
// The local Hugging Face cache, read as huggingface_hub reads it (offline): a model or adapter
// given as `org/name` or `org/name@revision` that is not an existing local path is looked up in
//   $HF_HUB_CACHE, else $HF_HOME/hub, else ${XDG_CACHE_HOME:-~/.cache}/huggingface/hub
// as  models--org--name/refs/<revision>   (a file holding the commit hash; revision "main" by default)
//     models--org--name/snapshots/<commit>/  (files are relative symlinks into ../../blobs/)
// A revision of 40 hex digits is taken as the commit itself.
//
//   std::string dir = io::resolve_pretrained("Qwen/Qwen2.5-0.5B-Instruct");  // the snapshot directory
//
// Every loader of model, tokenizer and adapter directories calls resolve_pretrained, so the CLI,
// recipes and Python take hub names wherever they take a directory.

#include <optional>
#include <string>

namespace ranktune::io {

struct HubRepo {
  std::string repo_id;            // "org/name"
  std::string revision = "main";  // a branch, tag or commit hash
};

// `org/name[@revision]` when `text` has that shape (one '/', names of letters, digits, '-', '_',
// '.', not starting with '.' or '-'); else nullopt. Says nothing about whether it exists.
std::optional<HubRepo> parse_hub_repo(const std::string& text);

// The cache directory huggingface_hub uses, from the environment as above.
std::string hub_cache_dir();

// The repository's folder in the cache: <cache>/models--org--name.
std::string hub_repo_dir(const HubRepo& repo, const std::string& cache_dir = hub_cache_dir());

// The snapshot directory of `repo` in the cache, or nullopt when the revision's ref or snapshot is
// absent.
std::optional<std::string> find_hub_snapshot(const HubRepo& repo, const std::string& cache_dir = hub_cache_dir());

// `path` itself when it exists (or is not of the form org/name); else the snapshot directory of
// the cached repository. Throws an error listing the places tried when neither exists.
std::string resolve_pretrained(const std::string& path);

}  // namespace ranktune::io
