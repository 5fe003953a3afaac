#include "pattern.h"

#include <map>
#include <mutex>

namespace ranktune::prompt::detail {

std::shared_ptr<const Regex> cached_pattern(const std::string& pattern) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const Regex>> cache;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(pattern);
    if (it != cache.end()) return it->second;
  }
  auto compiled = std::make_shared<const Regex>(pattern);  // compile outside the lock
  std::lock_guard<std::mutex> lock(mutex);
  if (cache.size() >= 256) cache.clear();  // a bound for programs that build patterns on the fly
  return cache.emplace(pattern, std::move(compiled)).first->second;
}

}  // namespace ranktune::prompt::detail
