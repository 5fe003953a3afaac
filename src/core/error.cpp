#include "ranktune/core/error.h"

namespace ranktune {

std::string format_error(const std::string& message, const ErrorContext& context) {
  std::string out;
  if (!context.file.empty()) {
    out += context.file;
    if (context.line >= 0) out += ":" + std::to_string(context.line);
    out += ": ";
  }
  if (!context.key.empty()) out += "'" + context.key + "': ";
  return out + message;
}

Error::Error(std::string message, ErrorContext context)
    : std::runtime_error(format_error(message, context)),
      message_(std::move(message)),
      context_(std::move(context)) {}

Error Error::with_context(const ErrorContext& outer) const {
  ErrorContext merged = context_;
  if (merged.file.empty()) merged.file = outer.file;
  if (merged.key.empty()) merged.key = outer.key;
  if (merged.line < 0) merged.line = outer.line;
  return Error(message_, merged);
}

}  // namespace ranktune
