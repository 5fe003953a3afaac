// shared_dir() and sentencepiece_loadable() on their own, without test_util.cpp's model helpers, so the sanitized parser tests
// (fuzz/CMakeLists.txt) can link it without the model layers.
#include "test_util.h"

#include <filesystem>

namespace ranktune::testing {

std::string shared_dir() {
  const std::filesystem::path dir(RANKTUNE_SHARED_DIR);
  return std::filesystem::is_directory(dir) ? std::filesystem::canonical(dir).string() : std::string();
}

bool sentencepiece_loadable() {
#if defined(__SANITIZE_ADDRESS__)
  return false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return false;
#endif
#endif
  return true;
}

}  // namespace ranktune::testing
