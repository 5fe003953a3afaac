#include "ranktune/prompt/retriever.h"

#include "ranktune/core/error.h"
#include "ranktune/core/regex.h"
#include "ranktune/core/utf8.h"
#include "ranktune/tokenizer/text_case.h"

#include <algorithm>
#include <cmath>

namespace ranktune::prompt {
namespace {

// A number (digits with inner `.`/`,` groups) or a word (letters, marks, digits).
const Regex& token_pattern() {
  static const Regex pattern(R"(\p{N}+(?:[.,]\p{N}+)*|[\p{L}\p{M}\p{N}]+)");
  return pattern;
}

// `1,000,000` → `1000000` when every comma group has three digits (a thousands separator);
// otherwise the number is kept as written.
std::string without_thousands_separators(const std::string& number) {
  if (number.find(',') == std::string::npos) return number;
  std::string out;
  size_t group = 0;
  bool after_comma = false;
  for (char c : number) {
    if (c == ',' || c == '.') {
      if (after_comma && group != 3) return number;
      after_comma = c == ',';
      group = 0;
      if (c == '.') out += c;
      continue;
    }
    ++group;
    out += c;
  }
  if (after_comma && group != 3) return number;
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// token_pattern's tokens of ASCII text, without the regex engine (GSM8K is ASCII; this is most of
// the index's build time): at a digit the number alternative wins, at a letter the word one.
void ascii_tokens(std::string_view text, std::vector<std::string>& out) {
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i;
    if (is_digit(text[i])) {
      while (j < text.size() && is_digit(text[j])) ++j;
      while (j + 1 < text.size() && (text[j] == '.' || text[j] == ',') && is_digit(text[j + 1])) {
        ++j;
        while (j < text.size() && is_digit(text[j])) ++j;
      }
    } else if (is_alnum(text[i])) {
      while (j < text.size() && is_alnum(text[j])) ++j;
    } else {
      ++i;
      continue;
    }
    std::string token(text.substr(i, j - i));
    for (char& c : token) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    if (token.find(',') != std::string::npos) token = without_thousands_separators(token);
    out.push_back(std::move(token));
    i = j;
  }
}

}  // namespace

std::vector<std::string> bm25_tokens(std::string_view text) {
  std::vector<std::string> out;
  if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; })) {
    ascii_tokens(text, out);
    return out;
  }
  const std::string valid = find_invalid_utf8(text) == std::string::npos ? std::string(text) : utf8_lossy(text);
  for (const auto& [begin, end] : token_pattern().find_all(valid)) {
    std::string token = tokenizer::lowercase(std::string_view(valid).substr(begin, end - begin));
    if (token.find(',') != std::string::npos) token = without_thousands_separators(token);
    out.push_back(std::move(token));
  }
  return out;
}

std::string collapse_whitespace(std::string_view text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::string to_string(IndexSource source) {
  switch (source) {
    case IndexSource::built: return "built";
    case IndexSource::cache_hit: return "cache hit";
    case IndexSource::cache_missing: return "built (no cache yet)";
    case IndexSource::cache_stale: return "rebuilt (stale cache)";
    case IndexSource::cache_corrupt: return "rebuilt (corrupt cache)";
  }
  return "built";
}

Bm25Index Bm25Index::build(std::vector<std::string> documents, Bm25Options options) {
  RANKTUNE_CHECK(documents.size() < UINT32_MAX, "a BM25 corpus holds at most 2^32 - 1 documents");
  Bm25Index index;
  index.options_ = options;
  index.documents_ = std::move(documents);
  index.lengths_.reserve(index.documents_.size());
  for (size_t d = 0; d < index.documents_.size(); ++d) {
    const std::vector<std::string> tokens = bm25_tokens(index.documents_[d]);
    index.lengths_.push_back(static_cast<uint32_t>(tokens.size()));
    for (const auto& token : tokens) {
      const auto [it, added] = index.term_ids_.emplace(token, static_cast<uint32_t>(index.postings_.size()));
      if (added) index.postings_.emplace_back();
      auto& list = index.postings_[it->second];
      if (list.empty() || list.back().document != d) list.push_back({static_cast<uint32_t>(d), 0});
      ++list.back().count;
    }
  }
  index.finish();
  return index;
}

void Bm25Index::finish() {
  double total = 0;
  for (uint32_t n : lengths_) total += n;
  average_length_ = lengths_.empty() ? 0.0 : total / static_cast<double>(lengths_.size());
  collapsed_.clear();
  collapsed_.reserve(documents_.size());
  for (const auto& d : documents_) collapsed_.push_back(collapse_whitespace(d));
}

std::vector<double> Bm25Index::scores(std::string_view query) const {
  std::vector<double> out(documents_.size(), 0.0);
  const double n = static_cast<double>(documents_.size());
  // An empty corpus or one without tokens: every score stays 0.
  const double avgdl = average_length_ > 0 ? average_length_ : 1.0;
  for (const auto& token : bm25_tokens(query)) {
    const auto it = term_ids_.find(token);
    if (it == term_ids_.end()) continue;
    const auto& list = postings_[it->second];
    const double df = static_cast<double>(list.size());
    const double idf = std::log(1.0 + (n - df + 0.5) / (df + 0.5));
    for (const Posting& p : list) {
      const double f = p.count;
      const double norm = options_.k1 * (1.0 - options_.b + options_.b * lengths_[p.document] / avgdl);
      out[p.document] += idf * f * (options_.k1 + 1.0) / (f + norm);
    }
  }
  return out;
}

double Bm25Index::score(std::string_view query, int64_t index) const {
  RANKTUNE_CHECK(index >= 0 && index < size(), "document ", index, " is outside the corpus of ", size());
  return scores(query)[static_cast<size_t>(index)];
}

std::vector<ScoredDocument> Bm25Index::search(std::string_view query, int64_t k) const {
  RANKTUNE_CHECK(k > 0, "the number of documents to retrieve must be positive, got ", k);
  const std::vector<double> s = scores(query);
  // The documents sharing a token with the query (scores are never negative), best first, ties in
  // corpus order; then, only if needed, the others in corpus order.
  std::vector<uint32_t> order;
  for (size_t d = 0; d < s.size(); ++d) {
    if (s[d] > 0) order.push_back(static_cast<uint32_t>(d));
  }
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return s[a] > s[b]; });
  const std::string asked = collapse_whitespace(query);
  std::vector<ScoredDocument> out;
  const auto offer = [&](uint32_t d) {
    if (collapsed_[d] == asked) return;
    const bool repeated = std::any_of(out.begin(), out.end(), [&](const ScoredDocument& o) {
      return collapsed_[static_cast<size_t>(o.index)] == collapsed_[d];
    });
    if (!repeated) out.push_back({static_cast<int64_t>(d), s[d]});
  };
  for (size_t i = 0; i < order.size() && static_cast<int64_t>(out.size()) < k; ++i) offer(order[i]);
  for (size_t d = 0; d < s.size() && static_cast<int64_t>(out.size()) < k; ++d) {
    if (s[d] == 0) offer(static_cast<uint32_t>(d));
  }
  return out;
}

uint64_t Bm25Index::content_hash(const std::vector<std::string>& documents) {
  uint64_t h = 0xcbf29ce484222325ULL;
  const auto mix = [&h](const char* bytes, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      h ^= static_cast<unsigned char>(bytes[i]);
      h *= 0x100000001b3ULL;
    }
  };
  for (const auto& d : documents) {
    const uint64_t n = d.size();
    mix(reinterpret_cast<const char*>(&n), sizeof n);  // so ["ab","c"] and ["a","bc"] differ
    mix(d.data(), d.size());
  }
  return h;
}

}  // namespace ranktune::prompt
