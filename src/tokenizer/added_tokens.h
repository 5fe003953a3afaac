#pragma once
// Added tokens (special or not): strings that are cut out of the text before the model sees
// it, as Hugging Face tokenizers' AddedVocabulary does.
//
// Splitting, in two passes: tokens with normalized=false are matched in the raw text; the
// rest of the text is normalized piece by piece, and tokens with normalized=true are matched
// (by their normalized form) in those pieces. Matching is leftmost-longest; single_word
// rejects a match touching a word character; lstrip/rstrip take the whitespace on that side
// into the token.

#include "pre_tokenizers.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ranktune::tokenizer {

class Normalizer;

struct AddedToken {
  int64_t id = -1;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// A piece of input after added-token splitting: either an added token (`token_id` >= 0) or
// normalized text for the pre-tokenizer.
struct Segment {
  int64_t token_id = -1;
  Piece piece;
};

class AddedVocabulary {
 public:
  // Adds a token, or replaces the flags of one with the same content.
  void add(const AddedToken& token);
  // Builds the matchers; call after the last add(). `normalizer` may be null.
  void build(const Normalizer* normalizer);

  // Cuts the added tokens out of `text` and normalizes the rest (see the file comment).
  std::vector<Segment> split(const std::string& text, const Normalizer* normalizer) const;

  const AddedToken* find(std::string_view content) const;
  const AddedToken* find(int64_t id) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool empty() const { return tokens_.empty(); }

 private:
  // Leftmost-longest multi-pattern matcher: a byte trie.
  class Matcher {
   public:
    void add(std::string_view pattern, int32_t token_index);
    // The leftmost-longest match at or after `from`: (begin, end, token index), or false.
    bool find(std::string_view text, size_t from, size_t* begin, size_t* end, int32_t* token_index) const;
    bool empty() const { return terminal_.size() <= 1; }

   private:
    int32_t child(int32_t node, unsigned char byte) const;
    std::unordered_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> child node
    std::vector<int32_t> terminal_{-1};           // node -> token index or -1; node 0 is the root
    bool first_byte_[256] = {};
  };

  // Splits `text` with `matcher` (offsets relative to `text`).
  struct Match {
    size_t begin, end;
    int64_t token_id;  // -1: text between tokens
  };
  std::vector<Match> find_matches(std::string_view text, const Matcher& matcher) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<std::string, size_t> by_content_;
  std::unordered_map<int64_t, size_t> by_id_;
  Matcher raw_matcher_;         // tokens with normalized=false
  Matcher normalized_matcher_;  // tokens with normalized=true, by their normalized content
};

}  // namespace ranktune::tokenizer
