#pragma once
// The BPE model of tokenizer.json: a vocabulary, ranked merges, and Hugging Face's options
// (unk_token + fuse_unk, byte_fallback to <0xNN> tokens, ignore_merges, continuing-subword
// prefix and end-of-word suffix). It encodes one pre-tokenized word at a time.
//
// Encoding follows tokenizers' Word::merge_all: repeatedly merge the adjacent pair with the
// lowest merge rank (leftmost first on ties), with a priority queue. Recent words are cached.

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ranktune::tokenizer {

struct BpeOptions {
  std::optional<std::string> unk_token;
  bool fuse_unk = false;       // consecutive unknown characters become one unk token
  bool byte_fallback = false;  // unknown characters become their UTF-8 bytes as <0xNN> tokens
  bool ignore_merges = false;  // a word that is itself in the vocabulary is one token (Llama 3)
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
};

class BpeModel {
 public:
  using Vocab = std::unordered_map<std::string, int32_t>;
  using Merges = std::vector<std::pair<std::string, std::string>>;

  // Throws ranktune::Error (without a file; the caller adds it) when a merge names a token that
  // is not in the vocabulary or unk_token is not in it.
  BpeModel(Vocab vocab, const Merges& merges, BpeOptions options);
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of one word. Thread-safe.
  void tokenize(std::string_view word, std::vector<int64_t>& out) const;

  std::optional<int64_t> token_to_id(std::string_view token) const;
  const std::string* id_to_token(int64_t id) const;  // nullptr when no token has that id
  int64_t max_id() const { return static_cast<int64_t>(id_to_token_.size()) - 1; }
  const BpeOptions& options() const { return options_; }
  size_t merge_count() const { return merges_.size(); }

 private:
  struct MergeTarget {
    int32_t rank;
    int32_t id;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  const int32_t* find(std::string_view token) const;
  std::vector<int32_t> merge_word(std::string_view word) const;

  Vocab vocab_;
  std::vector<const std::string*> id_to_token_;  // points into vocab_'s keys
  std::unordered_map<uint64_t, MergeTarget> merges_;
  BpeOptions options_;
  std::optional<int32_t> unk_id_;
  int32_t byte_ids_[256];  // ids of <0x00>..<0xFF>, -1 when absent (byte_fallback)

  // Words up to kMaxCachedWordBytes bytes; cleared when it reaches kCacheCapacity entries.
  static constexpr size_t kMaxCachedWordBytes = 256;
  static constexpr size_t kCacheCapacity = 50000;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace ranktune::tokenizer
