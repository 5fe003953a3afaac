// The on-disk BM25 index: what Bm25Index::load_or_build reads instead of tokenising the corpus.
//
// Layout (little-endian as written by this machine; a cache is local):
//   "RTBM25\n\0"  u32 format  u32 tokenisation version  u64 content hash
//   u64 documents  u64 terms
//   per term: u32 bytes, the term, u32 postings, (u32 document, u32 count) per posting
//   u32 length per document
//   u64 FNV-1a of everything before

#include "ranktune/prompt/retriever.h"

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/io/file.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <sstream>

namespace ranktune::prompt {
namespace {

namespace fs = std::filesystem;

const char kMagic[8] = {'R', 'T', 'B', 'M', '2', '5', '\n', '\0'};
constexpr uint32_t kFormat = 1;

uint64_t fnv1a(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

// Reads fixed-size values from the cache bytes, with bounds checked.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  template <typename T>
  T get() {
    need(sizeof(T));
    T value;
    std::memcpy(&value, bytes_.data() + at_, sizeof value);
    at_ += sizeof value;
    return value;
  }
  std::string_view take(size_t n) {
    need(n);
    const std::string_view out = bytes_.substr(at_, n);
    at_ += n;
    return out;
  }
  size_t remaining() const { return bytes_.size() - at_; }

 private:
  void need(size_t n) const {
    if (bytes_.size() - at_ < n) throw Error("truncated (ends inside the index)");
  }
  std::string_view bytes_;
  size_t at_ = 0;
};

struct Header {
  uint32_t version;
  uint64_t hash;
};

Header read_header(Reader& r) {
  if (r.take(sizeof kMagic) != std::string_view(kMagic, sizeof kMagic)) throw Error("not a ranktune BM25 index");
  if (r.get<uint32_t>() != kFormat) throw Error("unknown index format");
  Header h;
  h.version = r.get<uint32_t>();
  h.hash = r.get<uint64_t>();
  return h;
}

// Checks the magic, format and checksum of an index file; returns its header with `body` (over the
// bytes before the checksum) positioned after it. Throws when the file is not a whole index.
Header checked_header(std::string_view bytes, Reader& body) {
  if (bytes.size() < sizeof(uint64_t)) throw Error("truncated (shorter than its checksum)");
  const std::string_view content = bytes.substr(0, bytes.size() - sizeof(uint64_t));
  uint64_t checksum;
  std::memcpy(&checksum, bytes.data() + content.size(), sizeof checksum);
  body = Reader(content);
  const Header header = read_header(body);
  if (checksum != fnv1a(content)) throw Error("checksum mismatch");
  return header;
}

std::string cache_root() {
  if (const char* dir = std::getenv("RANKTUNE_CACHE_DIR"); dir != nullptr && *dir != '\0') return dir;
  if (const char* dir = std::getenv("XDG_CACHE_HOME"); dir != nullptr && *dir != '\0') return (fs::path(dir) / "ranktune").string();
  const char* home = std::getenv("HOME");
  return (fs::path(home != nullptr ? home : ".") / ".cache" / "ranktune").string();
}

}  // namespace

std::string Bm25Index::serialize() const {
  std::string out(kMagic, sizeof kMagic);
  put(out, kFormat);
  put(out, kBm25TokenizationVersion);
  put(out, content_hash(documents_));
  put<uint64_t>(out, documents_.size());
  put<uint64_t>(out, postings_.size());
  std::vector<const std::string*> terms(postings_.size());
  for (const auto& [term, id] : term_ids_) terms[id] = &term;
  for (size_t id = 0; id < postings_.size(); ++id) {
    put<uint32_t>(out, static_cast<uint32_t>(terms[id]->size()));
    out += *terms[id];
    put<uint32_t>(out, static_cast<uint32_t>(postings_[id].size()));
    for (const Posting& p : postings_[id]) {
      put(out, p.document);
      put(out, p.count);
    }
  }
  for (uint32_t n : lengths_) put(out, n);
  put(out, fnv1a(out));
  return out;
}

Bm25Index Bm25Index::deserialize(std::string_view bytes, std::vector<std::string> documents, Bm25Options options) {
  Reader r(bytes);
  const Header header = checked_header(bytes, r);
  if (header.version != kBm25TokenizationVersion || header.hash != content_hash(documents)) {
    throw Error("the index of other documents");
  }
  Bm25Index index;
  index.options_ = options;
  index.documents_ = std::move(documents);
  const uint64_t n_documents = r.get<uint64_t>();
  const uint64_t n_terms = r.get<uint64_t>();
  if (n_documents != index.documents_.size()) throw Error("document count differs from the corpus");
  if (n_terms > r.remaining()) throw Error("term count larger than the file");
  index.postings_.resize(n_terms);
  index.term_ids_.reserve(n_terms);
  for (uint64_t id = 0; id < n_terms; ++id) {
    const std::string term(r.take(r.get<uint32_t>()));
    if (!index.term_ids_.emplace(term, static_cast<uint32_t>(id)).second) throw Error("a term appears twice");
    const uint32_t count = r.get<uint32_t>();
    if (count > r.remaining() / 8) throw Error("posting count larger than the file");
    auto& list = index.postings_[id];
    list.reserve(count);
    for (uint32_t i = 0; i < count; ++i) {
      const uint32_t document = r.get<uint32_t>();
      const uint32_t tf = r.get<uint32_t>();
      if (document >= n_documents || (!list.empty() && document <= list.back().document) || tf == 0) {
        throw Error("a posting is out of order or out of range");
      }
      list.push_back({document, tf});
    }
  }
  index.lengths_.reserve(n_documents);
  for (uint64_t d = 0; d < n_documents; ++d) index.lengths_.push_back(r.get<uint32_t>());
  if (r.remaining() != 0) throw Error("trailing bytes");
  index.finish();
  return index;
}

Bm25Index Bm25Index::load_or_build(std::vector<std::string> documents, const std::string& cache_file,
                                   Bm25Options options) {
  if (cache_file.empty()) return build(std::move(documents), options);
  IndexSource source = IndexSource::cache_missing;
  std::error_code ec;
  if (fs::exists(cache_file, ec)) {
    try {
      const std::string bytes = io::read_file(cache_file);
      Reader r(bytes);
      const Header header = checked_header(bytes, r);
      if (header.version == kBm25TokenizationVersion && header.hash == content_hash(documents)) {
        Bm25Index index = deserialize(bytes, documents, options);  // a copy: a bad body rebuilds from them
        index.source_ = IndexSource::cache_hit;
        return index;
      }
      source = IndexSource::cache_stale;  // a whole index, of other documents or another tokenisation
      log_info(c10::str(cache_file, ": the corpus or the tokenisation changed; rebuilding the BM25 index"));
    } catch (const Error& e) {
      source = IndexSource::cache_corrupt;
      log_warning(c10::str(cache_file, ": corrupt BM25 index (", e.message(), "); rebuilding it"));
    }
  }
  Bm25Index index = build(std::move(documents), options);
  index.source_ = source;
  try {
    fs::create_directories(fs::path(cache_file).parent_path());
    io::write_file_atomic(cache_file, index.serialize());
  } catch (const std::exception& e) {
    log_warning(c10::str(cache_file, ": cannot cache the BM25 index (", e.what(), "); continuing without"));
  }
  return index;
}

std::string bm25_cache_file(const std::string& corpus_path, const std::string& field) {
  std::error_code ec;
  const fs::path absolute = fs::weakly_canonical(fs::absolute(corpus_path), ec);
  const std::string key = (ec ? fs::path(corpus_path) : absolute).string();
  std::ostringstream name;
  name << fs::path(corpus_path).stem().string() << '-' << std::hex << std::setw(16) << std::setfill('0')
       << Bm25Index::content_hash({key, field}) << ".bm25";
  return (fs::path(cache_root()) / "bm25" / name.str()).string();
}

}  // namespace ranktune::prompt
