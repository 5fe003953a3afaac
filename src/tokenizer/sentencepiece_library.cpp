#include "sentencepiece_library.h"

#include "ranktune/core/error.h"

#include <dlfcn.h>

namespace ranktune::tokenizer {

namespace {

constexpr const char* kLibrary = "libsentencepiece.so.0";
constexpr const char* kProtobufVersionCheck = "_ZN6google8protobuf8internal13VerifyVersionEiiPKc";

// RTLD_DEEPBIND keeps the library's protobuf symbols bound to its own protobuf rather than the
// one LibTorch exports. AddressSanitizer refuses DEEPBIND (google/sanitizers#611), and without it
// the first model load crashes inside protobuf, so sanitizer builds refuse to load the library.
#if defined(__SANITIZE_ADDRESS__)
#define RANKTUNE_ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RANKTUNE_ADDRESS_SANITIZER 1
#endif
#endif

void* symbol(void* handle, const char* name) {
  void* address = dlsym(handle, name);
  if (address == nullptr) throw Error(c10::str(kLibrary, " has no symbol ", name, " (unexpected version?)"));
  return address;
}

}  // namespace

SentencePieceLibrary::SentencePieceLibrary() {
  // Already loaded (linked into the process)? Then it was bound in the global scope, and is
  // only usable if its protobuf symbols did not bind to another protobuf.
#ifdef RANKTUNE_ADDRESS_SANITIZER
  throw Error(c10::str("cannot load ", kLibrary, " (needed for tokenizer.model files) in an AddressSanitizer "
                       "build: it must be opened with RTLD_DEEPBIND, which the sanitizer forbids"));
#endif
  const bool preloaded = dlopen(kLibrary, RTLD_LAZY | RTLD_NOLOAD) != nullptr;
  handle_ = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (handle_ == nullptr) {
    const char* reason = dlerror();
    throw Error(c10::str("cannot load ", kLibrary, " (needed for tokenizer.model files): ",
                         reason == nullptr ? "unknown error" : reason));
  }
  if (preloaded) {
    void* own = dlsym(handle_, kProtobufVersionCheck);
    void* global = dlsym(RTLD_DEFAULT, kProtobufVersionCheck);
    if (own != nullptr && global != nullptr && own != global) {
      throw Error(c10::str(kLibrary, " is linked into this program next to another protobuf runtime, so it would "
                           "abort on its first model; do not link it (ranktune loads it itself)"));
    }
  }
  construct_processor_ = reinterpret_cast<void (*)(void*)>(
      symbol(handle_, "_ZN13sentencepiece22SentencePieceProcessorC1Ev"));
  destroy_status_ = reinterpret_cast<void (*)(void*)>(symbol(handle_, "_ZN13sentencepiece4util6StatusD1Ev"));
  error_message_ = reinterpret_cast<const char* (*)(const void*)>(
      symbol(handle_, "_ZNK13sentencepiece4util6Status13error_messageEv"));
}

const SentencePieceLibrary& SentencePieceLibrary::get() {
  static const SentencePieceLibrary instance;  // a failed load throws, and is retried next time
  return instance;
}

std::unique_ptr<sentencepiece::SentencePieceProcessor> SentencePieceLibrary::new_processor() const {
  void* memory = ::operator new(sizeof(sentencepiece::SentencePieceProcessor));
  try {
    construct_processor_(memory);
  } catch (...) {
    ::operator delete(memory);
    throw;
  }
  // Deleting goes through the virtual destructor, inside the library.
  return std::unique_ptr<sentencepiece::SentencePieceProcessor>(
      static_cast<sentencepiece::SentencePieceProcessor*>(memory));
}

std::string SentencePieceLibrary::status_message(const sentencepiece::util::Status* status) const {
  const char* message = error_message_(status);
  return message == nullptr ? "" : message;
}

}  // namespace ranktune::tokenizer
