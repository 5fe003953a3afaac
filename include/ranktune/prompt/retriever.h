#pragma once
// BM25 retrieval over a corpus of short texts: the exemplars a few-shot template shows for each
// question, and the documents a `{context}` slot receives (docs/retrieval.md).
//
//   auto index = ranktune::prompt::Bm25Index::load_or_build(questions, cache_file);
//   for (const auto& hit : index.search("How many apples ...?", 8)) use(questions[hit.index]);
//
// Okapi BM25 (Robertson & Zaragoza 2009) with Lucene's non-negative idf:
//   score(q, d) = Σ_{t ∈ q} idf(t) · f(t,d)·(k1+1) / (f(t,d) + k1·(1 − b + b·|d|/avgdl))
//   idf(t)      = ln(1 + (N − n(t) + 0.5) / (n(t) + 0.5))
// where the sum runs over the query's tokens (a repeated token counts each time), f(t,d) is the
// count of t in d, |d| d's token count, avgdl the mean over the corpus, N the corpus size and n(t)
// the number of documents containing t.

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ranktune::prompt {

// Bumped whenever bm25_tokens changes: cached indexes of another version are rebuilt.
constexpr uint32_t kBm25TokenizationVersion = 1;

// The normalised tokens BM25 compares: maximal runs of letters, marks and digits (Unicode
// properties), lower-cased (Unicode's simple mappings, tokenizer/text_case.h); a number
// keeps its decimal point (`3.5`) and loses thousands separators (`1,000` → `1000`). Everything
// else (punctuation, symbols, space) separates tokens. Invalid UTF-8 is repaired first.
std::vector<std::string> bm25_tokens(std::string_view text);

// Text compared for exclusions: trimmed, with every run of white space made one space.
std::string collapse_whitespace(std::string_view text);

struct Bm25Options {
  double k1 = 1.5;   // term-frequency saturation
  double b = 0.75;   // document-length normalisation
};

struct ScoredDocument {
  int64_t index = 0;  // position in the corpus
  double score = 0;
};

// How load_or_build came by its index.
enum class IndexSource { built, cache_hit, cache_missing, cache_stale, cache_corrupt };
std::string to_string(IndexSource source);

class Bm25Index {
 public:
  // Tokenises and indexes `documents` (kept, in order).
  static Bm25Index build(std::vector<std::string> documents, Bm25Options options = {});
  // The index of `documents`, read from `cache_file` when that holds the index of the same
  // documents (their content hash) and tokenisation version; otherwise built and written there
  // (atomically). A stale cache (other content or version) is rebuilt silently, a corrupt one
  // (bad header, truncated, checksum mismatch) with a warning; a cache that cannot be written is a
  // warning, never an error. An empty `cache_file`: no cache.
  static Bm25Index load_or_build(std::vector<std::string> documents, const std::string& cache_file,
                                 Bm25Options options = {});

  // The k best documents for `query`, best first; equal scores in corpus order. Excluded: any
  // document whose text is the query's (after collapse_whitespace), and a document whose text
  // repeats one already returned. When fewer than k documents share a token with the query, the
  // rest are the first remaining documents in corpus order (score 0), so k are returned whenever
  // the corpus has them.
  std::vector<ScoredDocument> search(std::string_view query, int64_t k) const;
  // BM25 score of document `index` for `query` (no exclusions).
  double score(std::string_view query, int64_t index) const;

  int64_t size() const { return static_cast<int64_t>(documents_.size()); }
  const std::string& document(int64_t index) const { return documents_.at(static_cast<size_t>(index)); }
  const Bm25Options& options() const { return options_; }
  double average_length() const { return average_length_; }
  IndexSource source() const { return source_; }

  // Content hash of `documents` (FNV-1a 64 over each text and its length): the cache key.
  static uint64_t content_hash(const std::vector<std::string>& documents);
  // The binary cache format (header, vocabulary with postings, lengths, checksum) and back; the
  // reader throws ranktune::Error on any inconsistency.
  std::string serialize() const;
  static Bm25Index deserialize(std::string_view bytes, std::vector<std::string> documents, Bm25Options options);

 private:
  struct Posting {
    uint32_t document;
    uint32_t count;
  };
  void finish();  // average length and the collapsed texts, after the postings are in place
  std::vector<double> scores(std::string_view query) const;

  std::vector<std::string> documents_;
  std::vector<std::string> collapsed_;  // collapse_whitespace of each document, for exclusions
  std::unordered_map<std::string, uint32_t> term_ids_;
  std::vector<std::vector<Posting>> postings_;  // by term id, ascending document
  std::vector<uint32_t> lengths_;               // tokens per document
  double average_length_ = 0;
  Bm25Options options_;
  IndexSource source_ = IndexSource::built;
};

// Where indexes of corpus files are cached: $RANKTUNE_CACHE_DIR/bm25, else
// $XDG_CACHE_HOME/ranktune/bm25, else ~/.cache/ranktune/bm25. The file for a corpus is named
// after its absolute path and the field indexed, so an edited corpus finds (and replaces) its
// stale index.
std::string bm25_cache_file(const std::string& corpus_path, const std::string& field);

}  // namespace ranktune::prompt
