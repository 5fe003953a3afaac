#include "pre_tokenizers.h"

#include "byte_level.h"
#include "pattern.h"

#include <utility>

namespace ranktune::tokenizer {

namespace {

// GPT-2's pre-tokenization regex, as the ByteLevel pre-tokenizer uses it when use_regex is set.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Splits every piece with `pattern` and `behavior`; sub-pieces keep `at_start` when they begin
// their piece.
std::vector<Piece> split_pieces(std::vector<Piece>& pieces, const Pattern& pattern, SplitBehavior behavior,
                                bool invert) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  for (auto& piece : pieces) {
    for (const auto& [begin, end] : split_ranges(piece.text, pattern.find_all(piece.text), behavior, invert)) {
      out.push_back({piece.text.substr(begin, end - begin), piece.at_start && begin == 0});
    }
  }
  return out;
}

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& step : steps_) step->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

// Optionally adds a leading space and splits with GPT-2's regex, then maps every byte to its
// byte-level character.
class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex), regex_(Pattern::regex(kGpt2Pattern)) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_) {
      for (auto& piece : pieces) {
        if (piece.text.empty() || piece.text[0] != ' ') piece.text.insert(0, " ");
      }
    }
    if (use_regex_) pieces = split_pieces(pieces, regex_, SplitBehavior::isolated, /*invert=*/false);
    for (auto& piece : pieces) {
      std::string mapped;
      mapped.reserve(piece.text.size() * 2);
      append_byte_level(mapped, piece.text);
      piece.text = std::move(mapped);
    }
  }

 private:
  bool add_prefix_space_;
  bool use_regex_;
  Pattern regex_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    pieces = split_pieces(pieces, pattern_, behavior_, invert_);
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

// SentencePiece-style: spaces become the replacement character ("▁"), which is prepended
// (always, only at the start of the input, or never) and optionally split on.
class MetaspacePreTokenizer : public PreTokenizer {
 public:
  enum class Prepend { always, first, never };
  MetaspacePreTokenizer(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)),
        prepend_(prepend),
        split_(split),
        space_(Pattern::literal(" ")),
        marker_(Pattern::literal(replacement_)) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (auto& piece : pieces) {
      piece.text = space_.replace_all(piece.text, replacement_);
      const bool starts = piece.text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (prepend_ == Prepend::always || (prepend_ == Prepend::first && piece.at_start))) {
        piece.text.insert(0, replacement_);
      }
    }
    if (split_) pieces = split_pieces(pieces, marker_, SplitBehavior::merged_with_next, /*invert=*/false);
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
  Pattern space_, marker_;
};

SplitBehavior parse_behavior(io::SortedJsonFields& spec) {
  const std::string name = spec.get_string("behavior");
  if (name == "Removed") return SplitBehavior::removed;
  if (name == "Isolated") return SplitBehavior::isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (name == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (name == "Contiguous") return SplitBehavior::contiguous;
  spec.fail("behavior", "unknown split behavior '" + name +
                            "' (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)");
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const io::json& node, const io::JsonPath& at) {
  if (node.is_null()) return nullptr;
  io::SortedJsonFields spec(node, at);
  const std::string type = spec.get_string("type");
  if (type == "Sequence") {
    const io::json& list = spec.get_list("pretokenizers");
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      auto step = make_pre_tokenizer(list[i], spec.at("pretokenizers")[i]);
      if (step != nullptr) steps.push_back(std::move(step));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevelPreTokenizer>(spec.get_bool("add_prefix_space", true),
                                                   spec.get_bool("use_regex", true));
  }
  if (type == "Split") {
    return std::make_unique<SplitPreTokenizer>(read_pattern(spec, "pattern"), parse_behavior(spec),
                                               spec.get_bool("invert", false));
  }
  if (type == "Metaspace") {
    std::string replacement = spec.get_string("replacement");
    auto prepend = MetaspacePreTokenizer::Prepend::always;
    if (const auto scheme = spec.get_optional_string("prepend_scheme")) {
      if (*scheme == "always") {
        prepend = MetaspacePreTokenizer::Prepend::always;
      } else if (*scheme == "first") {
        prepend = MetaspacePreTokenizer::Prepend::first;
      } else if (*scheme == "never") {
        prepend = MetaspacePreTokenizer::Prepend::never;
      } else {
        spec.fail("prepend_scheme", "unknown prepend_scheme '" + *scheme + "' (expected always, first or never)");
      }
    } else if (!spec.get_bool("add_prefix_space", true)) {
      prepend = MetaspacePreTokenizer::Prepend::never;  // the older spelling
    }
    return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), prepend,
                                                   spec.get_bool("split", true));
  }
  if (type == "Digits") {
    const bool individual = spec.get_bool("individual_digits", false);
    return std::make_unique<SplitPreTokenizer>(Pattern::regex(R"(\p{N})"),
                                               individual ? SplitBehavior::isolated : SplitBehavior::contiguous,
                                               /*invert=*/false);
  }
  spec.fail("type", "unsupported pre-tokenizer type '" + type +
                        "' (supported: Sequence, ByteLevel, Split, Metaspace, Digits)");
}

}  // namespace ranktune::tokenizer
