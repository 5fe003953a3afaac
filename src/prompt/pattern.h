#pragma once
// A process-wide cache of compiled patterns: templates and answer formats are matched against
// every completion. Internal to src/prompt.

#include "ranktune/core/regex.h"

#include <memory>
#include <string>

namespace ranktune::prompt::detail {

// The compiled form of `pattern`, from a small process-wide cache (thread-safe). Throws like the
// Regex constructor.
std::shared_ptr<const Regex> cached_pattern(const std::string& pattern);

}  // namespace ranktune::prompt::detail
