#include "ranktune/core/log.h"

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>

namespace ranktune {
namespace {

LogLevel level_from_env() {
  const char* env = std::getenv("RANKTUNE_LOG_LEVEL");
  if (env == nullptr) return LogLevel::info;
  if (std::strcmp(env, "debug") == 0) return LogLevel::debug;
  if (std::strcmp(env, "warning") == 0) return LogLevel::warning;
  if (std::strcmp(env, "error") == 0) return LogLevel::error;
  return LogLevel::info;
}

struct LogState {
  std::mutex mutex;
  LogLevel level = level_from_env();
  LogSink sink;
};

LogState& state() {
  static LogState s;
  return s;
}

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warning: return "warning";
    case LogLevel::error: return "error";
  }
  return "?";
}

}  // namespace

void set_log_level(LogLevel level) {
  std::lock_guard<std::mutex> lock(state().mutex);
  state().level = level;
}

LogLevel log_level() {
  std::lock_guard<std::mutex> lock(state().mutex);
  return state().level;
}

LogSink set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lock(state().mutex);
  LogSink previous = std::move(state().sink);
  state().sink = std::move(sink);
  return previous;
}

void log(LogLevel level, const std::string& message) {
  std::lock_guard<std::mutex> lock(state().mutex);
  if (static_cast<int>(level) < static_cast<int>(state().level)) return;
  if (state().sink) {
    state().sink(level, message);
    return;
  }
  std::cerr << "[ranktune " << level_name(level) << "] " << message << std::endl;
}

}  // namespace ranktune
