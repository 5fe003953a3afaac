#include "added_tokens.h"

#include "ranktune/core/regex.h"
#include "normalizers.h"
#include "utf8.h"

namespace ranktune::tokenizer {

namespace {

// Rust regex's \w: alphabetic, marks, decimal digits, connector punctuation, join controls.
bool is_word_character(std::string_view character) {
  static const Regex word(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])");
  return word.full_match(character);
}

bool ends_with_word(std::string_view text) {
  if (text.empty()) return false;
  size_t begin = 0;
  previous_code_point(text, text.size(), &begin);
  return is_word_character(text.substr(begin));
}

bool starts_with_word(std::string_view text) {
  if (text.empty()) return false;
  return is_word_character(text.substr(0, utf8_sequence_length(static_cast<unsigned char>(text[0]))));
}

}  // namespace

// ---- matcher ---------------------------------------------------------------------------------

int32_t AddedVocabulary::Matcher::child(int32_t node, unsigned char byte) const {
  const auto it = edges_.find((static_cast<uint64_t>(node) << 8) | byte);
  return it == edges_.end() ? -1 : it->second;
}

void AddedVocabulary::Matcher::add(std::string_view pattern, int32_t token_index) {
  if (pattern.empty()) return;
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
  int32_t node = 0;
  for (char c : pattern) {
    const auto byte = static_cast<unsigned char>(c);
    int32_t next = child(node, byte);
    if (next < 0) {
      next = static_cast<int32_t>(terminal_.size());
      terminal_.push_back(-1);
      edges_.emplace((static_cast<uint64_t>(node) << 8) | byte, next);
    }
    node = next;
  }
  if (terminal_[node] < 0) terminal_[node] = token_index;  // the first of equal patterns wins
}

bool AddedVocabulary::Matcher::find(std::string_view text, size_t from, size_t* begin, size_t* end,
                                    int32_t* token_index) const {
  if (empty()) return false;
  for (size_t start = from; start < text.size(); ++start) {
    if (!first_byte_[static_cast<unsigned char>(text[start])]) continue;
    int32_t node = 0;
    int32_t best = -1;
    size_t best_end = 0;
    for (size_t i = start; i < text.size(); ++i) {
      node = child(node, static_cast<unsigned char>(text[i]));
      if (node < 0) break;
      if (terminal_[node] >= 0) {
        best = terminal_[node];
        best_end = i + 1;
      }
    }
    if (best >= 0) {
      *begin = start;
      *end = best_end;
      *token_index = best;
      return true;
    }
  }
  return false;
}

// ---- vocabulary ------------------------------------------------------------------------------

void AddedVocabulary::add(const AddedToken& token) {
  if (token.content.empty()) return;
  const auto it = by_content_.find(token.content);
  if (it != by_content_.end()) {
    by_id_.erase(tokens_[it->second].id);
    tokens_[it->second] = token;
    by_id_[token.id] = it->second;
    return;
  }
  by_content_.emplace(token.content, tokens_.size());
  by_id_[token.id] = tokens_.size();
  tokens_.push_back(token);
}

void AddedVocabulary::build(const Normalizer* normalizer) {
  raw_matcher_ = Matcher();
  normalized_matcher_ = Matcher();
  // tokenizers lists special tokens before the others; with leftmost-longest matching that
  // only decides between two tokens with the same text.
  for (bool special : {true, false}) {
    for (size_t i = 0; i < tokens_.size(); ++i) {
      const AddedToken& token = tokens_[i];
      if (token.special != special) continue;
      if (!token.normalized) {
        raw_matcher_.add(token.content, static_cast<int32_t>(i));
      } else {
        std::string pattern = token.content;
        if (normalizer != nullptr) normalizer->normalize(pattern);
        normalized_matcher_.add(pattern, static_cast<int32_t>(i));
      }
    }
  }
}

const AddedToken* AddedVocabulary::find(std::string_view content) const {
  const auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::find(int64_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::vector<AddedVocabulary::Match> AddedVocabulary::find_matches(std::string_view text, const Matcher& matcher) const {
  std::vector<Match> out;
  size_t covered = 0;  // text before this offset is already in `out`
  size_t search_from = 0;
  size_t begin = 0, end = 0;
  int32_t index = -1;
  while (matcher.find(text, search_from, &begin, &end, &index)) {
    search_from = end;
    const AddedToken& token = tokens_[static_cast<size_t>(index)];
    if (begin < covered) continue;  // inside whitespace an earlier rstrip took
    if (token.single_word && (ends_with_word(text.substr(0, begin)) || starts_with_word(text.substr(end)))) {
      continue;
    }
    if (token.lstrip) {
      size_t start = begin;
      while (start > covered) {
        size_t previous = 0;
        if (!is_unicode_whitespace(previous_code_point(text, start, &previous))) break;
        start = previous;
      }
      begin = start;
    }
    if (token.rstrip) {
      while (end < text.size()) {
        size_t next = end;
        if (!is_unicode_whitespace(next_code_point(text, next))) break;
        end = next;
      }
    }
    if (begin > covered) out.push_back({covered, begin, -1});
    out.push_back({begin, end, token.id});
    covered = end;
  }
  if (covered < text.size()) out.push_back({covered, text.size(), -1});
  return out;
}

std::vector<Segment> AddedVocabulary::split(const std::string& text, const Normalizer* normalizer) const {
  std::vector<Segment> segments;
  // Pass 1: tokens matched in the raw text.
  for (const Match& raw : find_matches(text, raw_matcher_)) {
    if (raw.token_id >= 0) {
      segments.push_back({raw.token_id, {}});
      continue;
    }
    // Pass 2: normalize the text between them and match the normalized tokens there.
    std::string normalized = text.substr(raw.begin, raw.end - raw.begin);
    if (normalizer != nullptr) normalizer->normalize(normalized);
    for (const Match& m : find_matches(normalized, normalized_matcher_)) {
      if (m.token_id >= 0) {
        segments.push_back({m.token_id, {}});
      } else {
        segments.push_back({-1, {normalized.substr(m.begin, m.end - m.begin), raw.begin == 0 && m.begin == 0}});
      }
    }
  }
  return segments;
}

}  // namespace ranktune::tokenizer
