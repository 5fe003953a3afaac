#pragma once
// Test helpers for the Hugging Face cache and hub: environment variables set for a scope, and a
// fake cache repository laid out exactly as huggingface_hub lays it out.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <map>
#include <optional>
#include <string>

namespace ranktune::testing {

// Sets the given environment variables (and clears the other hub variables) for the scope.
class ScopedHubEnv {
 public:
  explicit ScopedHubEnv(std::initializer_list<std::pair<const std::string, std::string>> values) {
    for (const char* name : {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME", "HF_ENDPOINT", "HF_TOKEN",
                             "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"}) {
      const char* old = std::getenv(name);
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
      ::unsetenv(name);
    }
    for (const auto& [k, v] : values) ::setenv(k.c_str(), v.c_str(), 1);
  }
  ~ScopedHubEnv() {
    for (const auto& [k, v] : saved_) {
      if (v) ::setenv(k.c_str(), v->c_str(), 1);
      else ::unsetenv(k.c_str());
    }
  }
  ScopedHubEnv(const ScopedHubEnv&) = delete;
  ScopedHubEnv& operator=(const ScopedHubEnv&) = delete;

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

// Adds `name` to snapshot `commit` of the cached repository folder `repo` (models--org--name): the
// bytes go to blobs/<blob>, the snapshot entry is a relative symlink ../../blobs/<blob> (one more
// ../ per directory level of `name`).
inline void add_cached_file(const std::filesystem::path& repo, const std::string& commit, const std::string& name,
                            const std::string& bytes, const std::string& blob) {
  namespace fs = std::filesystem;
  fs::create_directories(repo / "blobs");
  const fs::path entry = repo / "snapshots" / commit / name;
  fs::create_directories(entry.parent_path());
  std::ofstream(repo / "blobs" / blob, std::ios::binary) << bytes;
  const fs::path relative(name);
  fs::path up = "../..";
  for (auto depth = std::distance(relative.begin(), relative.end()); depth > 1; --depth) up /= "..";
  fs::create_symlink(up / "blobs" / blob, entry);
}

// refs/<ref> holding `commit` (huggingface_hub writes it without a newline).
inline void set_cached_ref(const std::filesystem::path& repo, const std::string& ref, const std::string& commit) {
  std::filesystem::create_directories((repo / "refs" / ref).parent_path());
  std::ofstream(repo / "refs" / ref, std::ios::binary) << commit;
}

}  // namespace ranktune::testing
