#pragma once
// Regex helpers of the prompt layer: a process-wide cache of compiled patterns (templates and
// answer formats are matched against every completion) and UTF-8 repair for completions cut
// mid-character. Internal to src/prompt.

#include "ranktune/core/regex.h"

#include <memory>
#include <string>
#include <string_view>

namespace ranktune::prompt::detail {

// The compiled form of `pattern`, from a small process-wide cache (thread-safe). Throws like the
// Regex constructor.
std::shared_ptr<const Regex> cached_pattern(const std::string& pattern);

// `text` with every byte that is not part of a well-formed UTF-8 sequence replaced by U+FFFD, so
// that a completion cut in the middle of a multi-byte character can still be searched.
std::string sanitize_utf8(std::string_view text);

}  // namespace ranktune::prompt::detail
