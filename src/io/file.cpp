#include "ranktune/io/file.h"

#include "ranktune/core/error.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ranktune::io {

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    throw Error("file not found", ErrorContext{path, "", -1});
  }
  if (std::filesystem::is_directory(path, ec)) {
    throw Error("expected a file but found a directory", ErrorContext{path, "", -1});
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(c10::str("cannot open: ", std::strerror(errno)), ErrorContext{path, "", -1});
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw Error("read failed", ErrorContext{path, "", -1});
  return buffer.str();
}

std::string temporary_path_for(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return c10::str(path, ".tmp.", ::getpid(), ".", counter.fetch_add(1));
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  const std::string tmp = temporary_path_for(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw Error(c10::str("cannot create temporary file '", tmp, "': ", std::strerror(errno)),
                ErrorContext{path, "", -1});
  }
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string reason = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error("write failed: " + reason, ErrorContext{path, "", -1});
    }
    written += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const bool closed = ::close(fd) == 0;
  if (!synced || !closed) {
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw Error("flush failed: " + reason, ErrorContext{path, "", -1});
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw Error("rename failed: " + reason, ErrorContext{path, "", -1});
  }
}

}  // namespace ranktune::io
