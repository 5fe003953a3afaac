#pragma once
// ranktune's one exception type. Every error a user can cause (a bad config value, a malformed
// file, a missing tensor) is a ranktune::Error that says where (file, line, key) and what is wrong.

#include <c10/util/StringUtil.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace ranktune {

// Where an error happened. Empty fields are left out of the message.
struct ErrorContext {
  std::string file;   // file being read or written
  std::string key;    // config field, JSON key or tensor name
  int64_t line = -1;  // 1-based line in `file`, or -1
};

class Error : public std::runtime_error {
 public:
  explicit Error(std::string message, ErrorContext context = {});

  // The message without the location prefix.
  const std::string& message() const { return message_; }
  const ErrorContext& context() const { return context_; }

  // A copy with the missing parts of `outer` filled in (an inner error knows the key, the caller
  // knows the file).
  Error with_context(const ErrorContext& outer) const;

 private:
  std::string message_;
  ErrorContext context_;
};

// "file:line: key: message" with the empty parts left out.
std::string format_error(const std::string& message, const ErrorContext& context);

}  // namespace ranktune

// Throws ranktune::Error when `cond` is false. The message parts are joined with c10::str, so
// numbers and shapes can be passed directly: RANKTUNE_CHECK(r > 0, "r must be positive, got ", r).
#define RANKTUNE_CHECK(cond, ...)                                   \
  do {                                                             \
    if (!(cond)) {                                                 \
      throw ::ranktune::Error(::c10::str(__VA_ARGS__));            \
    }                                                              \
  } while (false)

// Same, with a context (file, key, line) attached.
#define RANKTUNE_CHECK_CTX(cond, ctx, ...)                          \
  do {                                                             \
    if (!(cond)) {                                                 \
      throw ::ranktune::Error(::c10::str(__VA_ARGS__), (ctx));     \
    }                                                              \
  } while (false)
