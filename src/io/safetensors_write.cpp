// safetensors writing: check every input first, then stream the header and each tensor's bytes
// to a temporary file beside the target, fsync, and rename it into place. Only one tensor at a
// time is ever made contiguous, so writing a model needs no second copy of it in memory.

#include "ranktune/io/safetensors.h"

#include "ranktune/core/error.h"
#include "ranktune/io/file.h"
#include "ranktune/io/json.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

namespace ranktune::io {

namespace {

struct Entry {
  const std::string* name;
  const torch::Tensor* tensor;
  std::string dtype;  // safetensors name
  uint64_t begin = 0, end = 0;
};

// Checks names, definedness and dtypes, and orders the entries as the Python library does:
// largest element size first, then by name. Every size is a power of two, so each tensor then
// starts at a multiple of its element size and readers can map it without copying.
std::vector<Entry> plan(const std::string& path, const NamedTensors& tensors) {
  std::vector<Entry> entries;
  std::set<std::string> seen;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, tensor] = tensors[i];
    const ErrorContext ctx{path, name, -1};
    if (name.empty()) throw Error(c10::str("tensor #", i, " has an empty name"), ErrorContext{path, "", -1});
    if (name == "__metadata__") throw Error("this name is reserved for the header's metadata", ctx);
    if (!seen.insert(name).second) throw Error("duplicate tensor name", ctx);
    if (!tensor.defined()) throw Error("tensor is undefined", ctx);
    if (tensor.layout() != torch::kStrided) throw Error("only dense (strided) tensors can be saved", ctx);
    Entry e{&name, &tensor, "", 0, 0};
    try {
      e.dtype = dtype_to_safetensors(tensor.scalar_type());
    } catch (const Error& err) {
      throw err.with_context(ctx);
    }
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    const size_t sa = a.tensor->element_size(), sb = b.tensor->element_size();
    return sa != sb ? sa > sb : *a.name < *b.name;
  });
  uint64_t offset = 0;
  for (Entry& e : entries) {
    e.begin = offset;
    offset += static_cast<uint64_t>(e.tensor->numel()) * e.tensor->element_size();
    e.end = offset;
  }
  return entries;
}

// `{"__metadata__": {...}, "<name>": {"dtype", "shape", "data_offsets"}, ...}`, padded with
// spaces to a multiple of 8 bytes so the data section starts aligned.
std::string header_json(const std::string& path, const std::vector<Entry>& entries,
                        const std::map<std::string, std::string>& metadata) {
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  for (const Entry& e : entries) {
    header[*e.name] = {{"dtype", e.dtype}, {"shape", e.tensor->sizes().vec()}, {"data_offsets", {e.begin, e.end}}};
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::type_error& err) {
    throw Error(c10::str("tensor names and metadata must be valid UTF-8 (", err.what(), ")"),
                ErrorContext{path, "", -1});
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

// A temporary file beside `target` that is removed unless commit() renames it over `target`.
class TempFile {
 public:
  explicit TempFile(const std::string& target) : target_(target), tmp_(temporary_path_for(target)) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) fail(c10::str("cannot create temporary file '", tmp_, "'"));
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }

  void write(const void* data, size_t size) {
    const auto* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = ::write(fd_, p, size);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("write failed");
      }
      p += n;
      size -= static_cast<size_t>(n);
    }
  }

  void commit() {
    if (::fsync(fd_) != 0) fail("flush failed");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("close failed");
    if (std::rename(tmp_.c_str(), target_.c_str()) != 0) fail("rename failed");
    committed_ = true;
    // Make the rename itself durable; a failure here loses nothing already written.
    const std::string dir = std::filesystem::path(target_).parent_path().string();
    const int dir_fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      ::fsync(dir_fd);
      ::close(dir_fd);
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(c10::str(what, ": ", std::strerror(errno)), ErrorContext{target_, "", -1});
  }

  std::string target_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::vector<Entry> entries = plan(path, tensors);
  const std::string header = header_json(path, entries, metadata);
  const uint64_t header_len = header.size();  // written little-endian: the host is (see reader)

  TempFile out(path);
  out.write(&header_len, sizeof(header_len));
  out.write(header.data(), header.size());
  for (const Entry& e : entries) {
    const torch::Tensor bytes = e.tensor->to(torch::kCPU).contiguous();
    out.write(bytes.data_ptr(), bytes.nbytes());
  }
  out.commit();
}

}  // namespace ranktune::io
