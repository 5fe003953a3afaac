#pragma once
// libsentencepiece, loaded at run time in isolation.
//
// Debian's libsentencepiece carries (and exports) its own protobuf-lite 3.14 runtime, while
// LibTorch brings libprotobuf 3.21. Linked normally, the sentencepiece code binds to
// libprotobuf's definitions (the process's global symbol scope comes first) and aborts in
// protobuf's version check the first time a model is loaded. Opened with RTLD_DEEPBIND, the
// library binds to its own copy first. So nothing here links against it: the processor is
// built through dlsym'd entry points and used through its virtual methods only.

#include <sentencepiece_processor.h>

#include <memory>
#include <string>

namespace ranktune::tokenizer {

class SentencePieceLibrary {
 public:
  // Loads the library on first use; throws ranktune::Error when it cannot be used safely.
  static const SentencePieceLibrary& get();

  std::unique_ptr<sentencepiece::SentencePieceProcessor> new_processor() const;

  // Runs `call` (which returns a sentencepiece::util::Status) and returns "" on success or the
  // error message. The Status is destroyed by the library's own destructor.
  template <typename Call>
  std::string check(Call&& call) const {
    alignas(sentencepiece::util::Status) unsigned char storage[sizeof(sentencepiece::util::Status)];
    auto* status = new (storage) sentencepiece::util::Status(call());  // guaranteed copy elision
    const bool ok = status->ok();
    std::string message = ok ? std::string() : status_message(status);
    destroy_status_(status);
    if (!ok && message.empty()) message = "unknown error";
    return message;
  }

 private:
  SentencePieceLibrary();
  std::string status_message(const sentencepiece::util::Status* status) const;

  void* handle_ = nullptr;
  void (*construct_processor_)(void*) = nullptr;
  void (*destroy_status_)(void*) = nullptr;
  const char* (*error_message_)(const void*) = nullptr;
};

}  // namespace ranktune::tokenizer
