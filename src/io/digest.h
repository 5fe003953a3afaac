#pragma once
// File digests the hub publishes, to check downloads: SHA-256 (LFS files) and the git blob SHA-1
// (sha1("blob <size>\0" + bytes), the blobId of regular files). Lower-case hex. Uses OpenSSL.

#include <string>

namespace ranktune::io {

std::string sha256_file(const std::string& path);
std::string git_blob_sha1_file(const std::string& path);

}  // namespace ranktune::io
