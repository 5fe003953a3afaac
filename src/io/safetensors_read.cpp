// safetensors reading: map a file privately, validate its header before trusting any byte, and
// hand out tensors over the mapping without copying. Then checkpoints: one file, or an index
// (`model.safetensors.index.json`) and its shards. Pickle checkpoints are refused.

#include "ranktune/io/safetensors.h"

#include "ranktune/core/error.h"
#include "ranktune/io/file.h"
#include "ranktune/io/json.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <tuple>

namespace ranktune::io {

namespace fs = std::filesystem;

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian and is mapped as is; big-endian hosts need byte swaps");

// ---- dtypes ----------------------------------------------------------------------------------

namespace {

struct DtypeName {
  const char* name;
  torch::Dtype dtype;
};

constexpr DtypeName kDtypes[] = {
    {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
    {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},   {"I8", torch::kInt8},
    {"U8", torch::kUInt8},    {"BOOL", torch::kBool},
};
constexpr const char* kSupported = "F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL";

const DtypeName* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

}  // namespace

torch::Dtype dtype_from_safetensors(const std::string& name) {
  const DtypeName* d = find_dtype(name);
  RANKTUNE_CHECK(d != nullptr, "unknown safetensors dtype \"", name, "\" (supported: ", kSupported, ")");
  return d->dtype;
}

std::string dtype_to_safetensors(torch::Dtype dtype) {
  for (const auto& d : kDtypes) {
    if (d.dtype == dtype) return d.name;
  }
  throw Error(c10::str("dtype ", dtype, " cannot be stored in safetensors (supported: ", kSupported, ")"));
}

// ---- mapping and header validation -----------------------------------------------------------

namespace {

// The Python library's limit; a larger length means a corrupt file or not safetensors at all.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// A whole file mapped MAP_PRIVATE with write permission: pages written through a tensor are
// copied on write, so callers may modify tensors in place and the file never changes.
struct Mapping {
  uint8_t* base = nullptr;
  size_t size = 0;
  Mapping(uint8_t* b, size_t s) : base(b), size(s) {}
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { ::munmap(base, size); }
};

std::shared_ptr<Mapping> map_file(const std::string& path) {
  const ErrorContext ctx{path, "", -1};
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error("file not found", ctx);
  if (fs::is_directory(path, ec)) throw Error("expected a .safetensors file but found a directory", ctx);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(c10::str("cannot open: ", std::strerror(errno)), ctx);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error("not a regular file", ctx);
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw Error(c10::str("file is ", size, " bytes, too short for safetensors (which starts with an ",
                         "8-byte header length)"), ctx);
  }
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int mmap_errno = errno;
  ::close(fd);  // the mapping keeps its own reference to the file
  if (addr == MAP_FAILED) throw Error(c10::str("mmap failed: ", std::strerror(mmap_errno)), ctx);
  return std::make_shared<Mapping>(static_cast<uint8_t*>(addr), size);
}

// A non-negative JSON integer that fits in int64, or nothing (floats, strings and negatives fail).
bool as_count(const ordered_json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
  } else if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
  } else {
    return false;
  }
  return *out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

std::string shape_str(const std::vector<int64_t>& shape) { return c10::str("[", c10::Join(", ", shape), "]"); }

// One header entry, checked against the data section's size.
TensorInfo parse_entry(const std::string& name, const ordered_json& v, uint64_t data_size, const ErrorContext& ctx) {
  if (!v.is_object()) {
    throw Error(c10::str("expected an object with \"dtype\", \"shape\" and \"data_offsets\", got ",
                         json_type_name(v)), ctx);
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!v.contains(key)) throw Error(c10::str("missing \"", key, "\""), ctx);
  }
  TensorInfo info;
  info.name = name;

  const auto& dtype = v.at("dtype");
  if (!dtype.is_string()) throw Error("dtype must be a string, got " + dtype.dump(), ctx);
  info.dtype = dtype.get<std::string>();
  const DtypeName* d = find_dtype(info.dtype);
  if (d == nullptr) {
    throw Error(c10::str("unknown dtype \"", info.dtype, "\" (supported: ", kSupported, ")"), ctx);
  }

  const auto& shape = v.at("shape");
  if (!shape.is_array()) throw Error("shape must be a list of non-negative integers, got " + shape.dump(), ctx);
  uint64_t numel = 1;
  bool overflow = false;
  for (const auto& dim : shape) {
    uint64_t n = 0;
    if (!as_count(dim, &n)) {
      throw Error(c10::str("shape ", shape.dump(), " has ", dim.dump(),
                           "; dimensions must be non-negative integers"), ctx);
    }
    info.shape.push_back(static_cast<int64_t>(n));
    overflow |= __builtin_mul_overflow(numel, n, &numel);
  }
  const uint64_t elem = c10::elementSize(d->dtype);
  uint64_t nbytes = 0;
  overflow |= __builtin_mul_overflow(numel, elem, &nbytes);

  const auto& offsets = v.at("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !as_count(offsets[0], &info.begin) ||
      !as_count(offsets[1], &info.end)) {
    throw Error("data_offsets must be two non-negative integers [begin, end], got " + offsets.dump(), ctx);
  }
  if (info.begin > info.end) throw Error("data_offsets " + offsets.dump() + " have begin after end", ctx);
  if (info.end > data_size) {
    throw Error(c10::str("data_offsets ", offsets.dump(), " run past the end of the data section (",
                         data_size, " bytes)"), ctx);
  }
  if (overflow || info.end - info.begin != nbytes) {
    throw Error(c10::str("data_offsets ", offsets.dump(), " hold ", info.end - info.begin, " bytes, but shape ",
                         shape_str(info.shape), " of ", info.dtype, " needs ",
                         overflow ? std::string("more than 2^64") : std::to_string(nbytes), " bytes"), ctx);
  }
  return info;
}

std::map<std::string, std::string> parse_metadata(const ordered_json& v, const ErrorContext& ctx) {
  std::map<std::string, std::string> out;
  if (v.is_null()) return out;  // the Python library treats null as "no metadata"
  if (!v.is_object()) throw Error("expected an object of string values, got " + json_type_name(v), ctx);
  for (const auto& item : v.items()) {
    if (!item.value().is_string()) {
      throw Error(c10::str("value of \"", item.key(), "\" must be a string, got ", json_type_name(item.value()),
                           " ", item.value().dump()), ctx);
    }
    out[item.key()] = item.value().get<std::string>();
  }
  return out;
}

// Two tensors sharing bytes would alias silently; empty ranges share nothing.
void check_no_overlap(const std::map<std::string, TensorInfo>& tensors, const std::string& path) {
  std::vector<const TensorInfo*> sorted;
  for (const auto& [name, info] : tensors) {
    if (info.begin < info.end) sorted.push_back(&info);
  }
  std::sort(sorted.begin(), sorted.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return std::tie(a->begin, a->end, a->name) < std::tie(b->begin, b->end, b->name);
  });
  const TensorInfo* furthest = nullptr;  // the earlier range that reaches furthest
  for (const TensorInfo* t : sorted) {
    if (furthest != nullptr && t->begin < furthest->end) {
      throw Error(c10::str("bytes [", t->begin, ", ", t->end, ") overlap tensor '", furthest->name, "' [",
                           furthest->begin, ", ", furthest->end, ")"), ErrorContext{path, t->name, -1});
    }
    if (furthest == nullptr || t->end > furthest->end) furthest = t;
  }
}

}  // namespace

// ---- SafetensorsFile -------------------------------------------------------------------------

struct SafetensorsFile::Impl {
  std::string path;
  std::shared_ptr<Mapping> mapping;
  uint8_t* data = nullptr;  // start of the data section, inside the mapping
  std::map<std::string, TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  impl->mapping = map_file(path);
  const ErrorContext ctx{path, "", -1};
  const uint64_t file_size = impl->mapping->size;

  uint64_t header_len = 0;
  std::memcpy(&header_len, impl->mapping->base, 8);
  if (header_len > kMaxHeaderBytes) {
    throw Error(c10::str("header length ", header_len, " is over the 100 MB limit (corrupt, or not a ",
                         "safetensors file)"), ctx);
  }
  if (header_len > file_size - 8) {
    throw Error(c10::str("header length ", header_len, " runs past the end of the file (", file_size,
                         " bytes)"), ctx);
  }
  const char* text = reinterpret_cast<const char*>(impl->mapping->base + 8);
  const ordered_json header = parse_json(std::string(text, header_len), path);
  if (!header.is_object()) throw Error("header must be a JSON object, got " + json_type_name(header), ctx);

  impl->data = impl->mapping->base + 8 + header_len;
  const uint64_t data_size = file_size - 8 - header_len;
  for (const auto& item : header.items()) {
    const ErrorContext entry_ctx{path, item.key(), -1};
    if (item.key() == "__metadata__") {
      impl->metadata = parse_metadata(item.value(), entry_ctx);
    } else {
      impl->tensors[item.key()] = parse_entry(item.key(), item.value(), data_size, entry_ctx);
    }
  }
  check_no_overlap(impl->tensors, path);

  SafetensorsFile file;
  file.impl_ = std::move(impl);
  return file;
}

const std::string& SafetensorsFile::path() const { return impl_->path; }

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& item : impl_->tensors) out.push_back(item.first);
  return out;
}

bool SafetensorsFile::contains(const std::string& name) const { return impl_->tensors.count(name) != 0; }

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto it = impl_->tensors.find(name);
  if (it == impl_->tensors.end()) {
    throw Error(c10::str("no such tensor in this file (it has ", impl_->tensors.size(), ")"),
                ErrorContext{impl_->path, name, -1});
  }
  return it->second;
}

const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return impl_->metadata; }

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& info = this->info(name);
  const torch::Dtype dtype = dtype_from_safetensors(info.dtype);
  uint8_t* bytes = impl_->data + info.begin;
  if (dtype == torch::kBool) {
    // Kernels assume every bool byte is 0 or 1; anything else is undefined behaviour, so check.
    const uint8_t* begin = bytes;
    const uint8_t* end = bytes + (info.end - info.begin);
    const uint8_t* bad = std::find_if(begin, end, [](uint8_t b) { return b > 1; });
    if (bad != end) {
      throw Error(c10::str("BOOL element ", bad - begin, " is stored as byte ", int{*bad}, "; only 0 and 1 are valid"),
                  ErrorContext{impl_->path, name, -1});
    }
  }
  if (reinterpret_cast<uintptr_t>(bytes) % c10::elementSize(dtype) != 0) {
    // Writers that sort by dtype size (the Python library, ours) keep every tensor aligned; for
    // other files, copy rather than hand kernels misaligned pointers.
    torch::Tensor copy = torch::empty(info.shape, torch::TensorOptions().dtype(dtype));
    std::memcpy(copy.data_ptr(), bytes, info.end - info.begin);
    return copy;
  }
  std::shared_ptr<Mapping> keep_alive = impl_->mapping;
  return torch::from_blob(bytes, info.shape, [keep_alive](void*) {}, torch::TensorOptions().dtype(dtype));
}

// ---- SafetensorsCheckpoint -------------------------------------------------------------------

namespace {

// What a checkpoint reads: its files and which one holds each tensor.
struct Shards {
  std::vector<SafetensorsFile> shards;
  std::map<std::string, size_t> shard_of;  // tensor name -> index into `shards`
  std::map<std::string, std::string> metadata;
};

bool is_pickle_file(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".bin" || ext == ".pt" || ext == ".pth";
}

[[noreturn]] void refuse_pickle(const std::string& path, const std::string& file_name) {
  throw Error(c10::str(
      "refusing to load pickle checkpoint '", file_name, "': unpickling can execute arbitrary code, so ranktune ",
      "reads only safetensors. Convert it once in Python, if you trust it: with transformers, ",
      "AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, safe_serialization=True); or ",
      "safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')"),
      ErrorContext{path, "", -1});
}

// Index shard names are plain file names; refuse anything that could reach outside the directory.
bool is_safe_shard_name(const std::string& shard) {
  const fs::path p(shard);
  if (shard.empty() || p.is_absolute()) return false;
  for (const auto& part : p) {
    if (part.string() == "..") return false;
  }
  return true;
}

std::map<std::string, std::string> parse_index_metadata(JsonFields& fields) {
  std::map<std::string, std::string> out;
  if (!fields.has_value("metadata")) return out;
  const auto& v = fields.raw("metadata");
  if (!v.is_object()) fields.fail("metadata", "expected an object, got " + json_type_name(v));
  // Hugging Face writes {"total_size": <integer>}; non-strings are kept as their JSON text.
  for (const auto& item : v.items()) {
    out[item.key()] = item.value().is_string() ? item.value().get<std::string>() : item.value().dump();
  }
  return out;
}

void open_index(Shards& out, const std::string& index_path) {
  const ordered_json root = parse_json(read_file(index_path), index_path);
  JsonFields fields(root, index_path);
  if (!fields.has("weight_map")) {
    // A model's config.json is the .json most often passed by mistake: say what it is.
    if (fields.has("architectures") || fields.has("model_type") || fs::path(index_path).filename() == "config.json") {
      throw Error("is a model's config.json, not a safetensors file or shard index (model.safetensors.index.json); "
                  "pass the model directory that holds it", ErrorContext{index_path, "", -1});
    }
    fields.fail("weight_map", "missing; an index maps each tensor name to its shard file");
  }
  const auto& weight_map = fields.raw("weight_map");
  if (!weight_map.is_object()) fields.fail("weight_map", "expected an object, got " + json_type_name(weight_map));
  out.metadata = parse_index_metadata(fields);

  const fs::path dir = fs::path(index_path).parent_path();
  std::map<std::string, size_t> shard_index;  // shard file name -> index into out.shards
  std::vector<std::string> shard_names;
  for (const auto& item : weight_map.items()) {
    const ErrorContext ctx{index_path, item.key(), -1};
    if (!item.value().is_string()) throw Error("expected a shard file name, got " + item.value().dump(), ctx);
    const std::string shard = item.value().get<std::string>();
    if (!is_safe_shard_name(shard)) {
      throw Error("shard '" + shard + "' must be a relative path inside the index's directory", ctx);
    }
    auto it = shard_index.find(shard);
    if (it == shard_index.end()) {
      try {
        out.shards.push_back(SafetensorsFile::open((dir / shard).string()));
      } catch (const Error& e) {
        throw Error(c10::str("cannot open shard '", shard, "': ", e.what()), ctx);
      }
      shard_names.push_back(shard);
      it = shard_index.emplace(shard, out.shards.size() - 1).first;
    }
    out.shard_of[item.key()] = it->second;
  }

  // Report every listed tensor a shard lacks at once: one bad shard usually lacks many.
  std::vector<std::string> missing;
  for (const auto& [name, i] : out.shard_of) {
    if (!out.shards[i].contains(name)) missing.push_back(name);
  }
  if (!missing.empty()) {
    const std::string& first = missing.front();
    throw Error(c10::str("listed in shard '", shard_names[out.shard_of.at(first)],
                         "', but that shard has no such tensor",
                         missing.size() > 1 ? c10::str(" (", missing.size() - 1, " more tensors are missing too)")
                                            : std::string()),
                ErrorContext{index_path, first, -1});
  }
}

void open_single(Shards& out, const std::string& file_path) {
  out.shards.push_back(SafetensorsFile::open(file_path));
  for (const auto& name : out.shards[0].names()) out.shard_of[name] = 0;
  out.metadata = out.shards[0].metadata();
}

}  // namespace

struct SafetensorsCheckpoint::Impl : Shards {
  std::string path;
};

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& path) {
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  const fs::path p(path);
  std::error_code ec;
  if (!fs::exists(p, ec)) throw Error("checkpoint not found", ErrorContext{path, "", -1});

  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "model.safetensors", ec)) {
      open_single(*impl, (p / "model.safetensors").string());
    } else if (fs::exists(p / "model.safetensors.index.json", ec)) {
      open_index(*impl, (p / "model.safetensors.index.json").string());
    } else {
      std::vector<std::string> pickles, others;
      for (const auto& entry : fs::directory_iterator(p, ec)) {
        const fs::path f = entry.path();
        if (is_pickle_file(f)) pickles.push_back(f.filename().string());
        if (f.extension() == ".safetensors") others.push_back(f.filename().string());
      }
      std::sort(pickles.begin(), pickles.end());
      std::sort(others.begin(), others.end());
      if (!pickles.empty() && others.empty()) {
        const bool hf = std::count(pickles.begin(), pickles.end(), "pytorch_model.bin") != 0;
        refuse_pickle(path, hf ? "pytorch_model.bin" : pickles.front());
      }
      throw Error(c10::str("no model.safetensors or model.safetensors.index.json in this directory",
                           others.empty() ? std::string() : c10::str(" (found ", c10::Join(", ", others),
                                                                     "; pass one of them as the path)")),
                  ErrorContext{path, "", -1});
    }
  } else if (is_pickle_file(p)) {
    refuse_pickle(path, p.filename().string());
  } else if (p.extension() == ".json") {
    open_index(*impl, path);
  } else {
    open_single(*impl, path);
  }

  SafetensorsCheckpoint ckpt;
  ckpt.impl_ = std::move(impl);
  return ckpt;
}

const std::string& SafetensorsCheckpoint::path() const { return impl_->path; }

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto& item : impl_->shard_of) out.push_back(item.first);
  return out;
}

bool SafetensorsCheckpoint::contains(const std::string& name) const { return impl_->shard_of.count(name) != 0; }

const TensorInfo& SafetensorsCheckpoint::info(const std::string& name) const {
  const auto it = impl_->shard_of.find(name);
  if (it == impl_->shard_of.end()) {
    throw Error(c10::str("no such tensor in the checkpoint (it has ", impl_->shard_of.size(), ")"),
                ErrorContext{impl_->path, name, -1});
  }
  return impl_->shards[it->second].info(name);
}

torch::Tensor SafetensorsCheckpoint::tensor(const std::string& name) const {
  info(name);  // throws naming the checkpoint when absent
  return impl_->shards[impl_->shard_of.at(name)].tensor(name);
}

const std::map<std::string, std::string>& SafetensorsCheckpoint::metadata() const { return impl_->metadata; }

std::vector<std::string> SafetensorsCheckpoint::files() const {
  std::vector<std::string> out;
  for (const auto& shard : impl_->shards) out.push_back(shard.path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace ranktune::io
