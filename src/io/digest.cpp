#include "digest.h"

#include "ranktune/core/error.h"

#include <openssl/evp.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

namespace ranktune::io {
namespace {

// The digest of `prefix` followed by the file's bytes, read in 1 MiB pieces.
std::string file_digest(const std::string& path, const EVP_MD* md, const std::string& prefix) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read the file", ErrorContext{path, "", -1});
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  RANKTUNE_CHECK(ctx && EVP_DigestInit_ex(ctx.get(), md, nullptr) == 1, "OpenSSL digest initialisation failed");
  EVP_DigestUpdate(ctx.get(), prefix.data(), prefix.size());
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw Error("read error", ErrorContext{path, "", -1});
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

}  // namespace

std::string sha256_file(const std::string& path) { return file_digest(path, EVP_sha256(), ""); }

std::string git_blob_sha1_file(const std::string& path) {
  const auto size = std::filesystem::file_size(path);
  return file_digest(path, EVP_sha1(), "blob " + std::to_string(size) + std::string(1, '\0'));
}

}  // namespace ranktune::io
