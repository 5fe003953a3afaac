#include "ranktune/io/hub_cache.h"

#include "hf_home.h"

#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/file.h"

#include <cstdlib>
#include <filesystem>

namespace ranktune::io {
namespace {

namespace fs = std::filesystem;

bool is_name(const std::string& s) {
  if (s.empty() || s[0] == '.' || s[0] == '-' || s.find("..") != std::string::npos || s.find("--") != std::string::npos) return false;
  for (const char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

bool is_commit_hash(const std::string& s) {
  if (s.size() != 40) return false;
  for (const char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

}  // namespace

std::optional<HubRepo> parse_hub_repo(const std::string& text) {
  HubRepo repo;
  std::string id = text;
  if (const size_t at = text.find('@'); at != std::string::npos) {
    id = text.substr(0, at);
    repo.revision = text.substr(at + 1);
    // A branch may hold '/' (refs/pr/1); never "..", so a ref stays inside refs/.
    if (repo.revision.empty() || repo.revision.find("..") != std::string::npos || repo.revision[0] == '/') return std::nullopt;
  }
  const size_t slash = id.find('/');
  if (slash == std::string::npos || id.find('/', slash + 1) != std::string::npos) return std::nullopt;
  if (!is_name(id.substr(0, slash)) || !is_name(id.substr(slash + 1))) return std::nullopt;
  repo.repo_id = id;
  return repo;
}

std::string hub_cache_dir() {
  // huggingface_hub's constants.py: HF_HUB_CACHE (or its old name HUGGINGFACE_HUB_CACHE), else
  // HF_HOME/hub, HF_HOME defaulting to $XDG_CACHE_HOME/huggingface and that to ~/.cache.
  if (const std::string cache = env("HF_HUB_CACHE"); !cache.empty()) return cache;
  if (const std::string cache = env("HUGGINGFACE_HUB_CACHE"); !cache.empty()) return cache;
  return (fs::path(hf_home()) / "hub").string();
}

std::string hf_home() {
  if (std::string home = env("HF_HOME"); !home.empty()) return home;
  std::string xdg = env("XDG_CACHE_HOME");
  if (xdg.empty()) xdg = (fs::path(env("HOME")) / ".cache").string();
  return (fs::path(xdg) / "huggingface").string();
}

std::string hub_repo_dir(const HubRepo& repo, const std::string& cache_dir) {
  std::string folder = "models--" + repo.repo_id;
  folder.replace(folder.find('/'), 1, "--");
  return (fs::path(cache_dir) / folder).string();
}

std::optional<std::string> find_hub_snapshot(const HubRepo& repo, const std::string& cache_dir) {
  const fs::path dir = hub_repo_dir(repo, cache_dir);
  std::string commit = repo.revision;
  const fs::path ref = dir / "refs" / repo.revision;
  if (fs::is_regular_file(ref)) {
    commit = trim(read_file(ref.string()));
  } else if (!is_commit_hash(repo.revision)) {
    return std::nullopt;
  }
  const fs::path snapshot = dir / "snapshots" / commit;
  if (!is_commit_hash(commit) || !fs::is_directory(snapshot)) return std::nullopt;
  return snapshot.string();
}

std::string resolve_pretrained(const std::string& path) {
  if (fs::exists(path)) return path;
  const std::optional<HubRepo> repo = parse_hub_repo(path);
  if (!repo) return path;  // the caller reports the missing path as it always has
  const std::string cache = hub_cache_dir();
  if (auto snapshot = find_hub_snapshot(*repo, cache)) return *snapshot;
  const fs::path dir = hub_repo_dir(*repo, cache);
  const bool commit = is_commit_hash(repo->revision) && !fs::exists(dir / "refs" / repo->revision);
  throw Error(c10::str("not found: no local directory '", path, "', and not in the Hugging Face cache (",
                       commit ? (dir / "snapshots" / repo->revision).string()
                              : (dir / "refs" / repo->revision).string() + " and its snapshot",
                       "; the cache is $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub). "
                       "Download it with `ranktune download ", repo->repo_id,
                       repo->revision == "main" ? std::string() : " --revision " + repo->revision, "`"),
              ErrorContext{path, "", -1});
}

}  // namespace ranktune::io
