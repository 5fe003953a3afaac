#include "bpe_model.h"

#include "ranktune/core/error.h"
#include "utf8.h"

#include <algorithm>
#include <cstdio>

namespace ranktune::tokenizer {

BpeModel::BpeModel(Vocab vocab, const Merges& merges, BpeOptions options)
    : vocab_(std::move(vocab)), options_(std::move(options)) {
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab_) {
    RANKTUNE_CHECK(id >= 0, "model.vocab: token '", token, "' has a negative id ", id);
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(static_cast<size_t>(max_id + 1), nullptr);
  for (const auto& [token, id] : vocab_) id_to_token_[id] = &token;

  if (options_.unk_token) {
    const int32_t* id = find(*options_.unk_token);
    RANKTUNE_CHECK(id != nullptr, "model.unk_token '", *options_.unk_token, "' is not in the vocabulary");
    unk_id_ = *id;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    const int32_t* id = find(name);
    byte_ids_[b] = id == nullptr ? -1 : *id;
  }

  // Ranks follow the file order; a repeated pair keeps its last rank, as in tokenizers.
  merges_.reserve(merges.size());
  const size_t prefix_length = options_.continuing_subword_prefix.size();
  std::string merged;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const int32_t* left_id = find(left);
    const int32_t* right_id = find(right);
    RANKTUNE_CHECK(left_id != nullptr, "model.merges[", rank, "]: token '", left, "' is not in the vocabulary");
    RANKTUNE_CHECK(right_id != nullptr, "model.merges[", rank, "]: token '", right, "' is not in the vocabulary");
    merged.assign(left);
    const bool has_prefix = prefix_length > 0 && right.compare(0, prefix_length, options_.continuing_subword_prefix) == 0;
    merged.append(right, has_prefix ? prefix_length : 0, std::string::npos);
    const int32_t* merged_id = find(merged);
    RANKTUNE_CHECK(merged_id != nullptr, "model.merges[", rank, "]: the merged token '", merged,
                   "' is not in the vocabulary");
    merges_[pair_key(*left_id, *right_id)] = MergeTarget{static_cast<int32_t>(rank), *merged_id};
  }
}

const int32_t* BpeModel::find(std::string_view token) const {
  // std::unordered_map has no heterogeneous lookup in C++17: reuse one key buffer per thread.
  thread_local std::string key;
  key.assign(token.data(), token.size());
  const auto it = vocab_.find(key);
  return it == vocab_.end() ? nullptr : &it->second;
}

std::optional<int64_t> BpeModel::token_to_id(std::string_view token) const {
  const int32_t* id = find(token);
  if (id == nullptr) return std::nullopt;
  return *id;
}

const std::string* BpeModel::id_to_token(int64_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(id_to_token_.size())) return nullptr;
  return id_to_token_[static_cast<size_t>(id)];
}

void BpeModel::tokenize(std::string_view word, std::vector<int64_t>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (const int32_t* id = find(word)) {
      out.push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  thread_local std::string key;
  if (cacheable) {
    key.assign(word.data(), word.size());
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids = merge_word(word);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(key, std::move(ids));
  }
}

std::vector<int32_t> BpeModel::merge_word(std::string_view word) const {
  // 1. One symbol per character (with the subword prefix/suffix), or per byte with byte
  //    fallback, or unk (fused when fuse_unk).
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  const auto add = [&](int32_t id) {
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back(Symbol{id, index - 1, index + 1, true});
  };
  bool pending_unk = false;  // an unk symbol not yet added (fuse_unk extends it)
  std::string piece;
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t begin = pos;
    pos += std::min(utf8_sequence_length(static_cast<unsigned char>(word[pos])), word.size() - pos);
    piece.clear();
    if (begin > 0) piece += options_.continuing_subword_prefix;
    piece.append(word.substr(begin, pos - begin));
    if (pos == word.size()) piece += options_.end_of_word_suffix;

    if (const int32_t* id = find(piece)) {
      if (pending_unk) add(*unk_id_);
      pending_unk = false;
      add(*id);
      continue;
    }
    if (options_.byte_fallback) {
      const bool all_bytes = std::all_of(piece.begin(), piece.end(),
                                         [&](char c) { return byte_ids_[static_cast<unsigned char>(c)] >= 0; });
      if (all_bytes) {
        // tokenizers does not flush a pending unk here: it comes after these bytes.
        for (char c : piece) add(byte_ids_[static_cast<unsigned char>(c)]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk && !options_.fuse_unk) add(*unk_id_);
      pending_unk = true;
    }
    // Without unk_token an unknown character is dropped, as in tokenizers.
  }
  if (pending_unk) add(*unk_id_);
  if (!symbols.empty()) symbols.back().next = -1;

  // 2. Merge the lowest-ranked adjacent pair until none is left.
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Candidate> heap;
  heap.reserve(symbols.size());
  const auto push = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    const auto it = merges_.find(pair_key(symbols[left].id, symbols[right].id));
    if (it == merges_.end()) return;
    heap.push_back(Candidate{it->second.rank, left, it->second.id});
    std::push_heap(heap.begin(), heap.end(), std::greater<Candidate>());
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<Candidate>());
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Skip stale entries: the pair at this position changed since it was queued.
    const auto it = merges_.find(pair_key(left.id, right.id));
    if (it == merges_.end() || it->second.id != top.id) continue;
    left.id = top.id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push(left.prev);
    push(top.pos);
  }

  std::vector<int32_t> ids;
  ids.reserve(symbols.size());
  for (const auto& s : symbols) {
    if (s.alive) ids.push_back(s.id);
  }
  return ids;
}

}  // namespace ranktune::tokenizer
