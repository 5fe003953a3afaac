#pragma once
// Minimal leveled logging to stderr. Warnings are for cases with a real fallback (an unknown
// config field that is ignored, say); errors are thrown, not logged.

#include <functional>
#include <string>

namespace ranktune {

enum class LogLevel { debug = 0, info = 1, warning = 2, error = 3 };

using LogSink = std::function<void(LogLevel, const std::string&)>;

// Messages below `level` are dropped. Default: info (RANKTUNE_LOG_LEVEL=debug|info|warning|error).
void set_log_level(LogLevel level);
LogLevel log_level();

// Replaces where messages go (stderr by default); returns the previous sink. Pass nullptr to
// restore stderr. Tests use this to assert that a warning was given.
LogSink set_log_sink(LogSink sink);

void log(LogLevel level, const std::string& message);
inline void log_debug(const std::string& m) { log(LogLevel::debug, m); }
inline void log_info(const std::string& m) { log(LogLevel::info, m); }
inline void log_warning(const std::string& m) { log(LogLevel::warning, m); }

}  // namespace ranktune
