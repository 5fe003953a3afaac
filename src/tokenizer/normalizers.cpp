#include "normalizers.h"

#include "pattern.h"
#include "unicode_normalization.h"
#include "utf8.h"

#include <vector>

namespace ranktune::tokenizer {

namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  void normalize(std::string& text) const override {
    for (const auto& step : steps_) step->normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

class NfcNormalizer : public Normalizer {
 public:
  void normalize(std::string& text) const override { text = to_nfc(text); }
};

class NfdNormalizer : public Normalizer {
 public:
  void normalize(std::string& text) const override { text = to_nfd(text); }
};

// Prepends a string to non-empty text (SentencePiece's dummy prefix "▁").
class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Pattern pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(std::string& text) const override { text = pattern_.replace_all(text, content_); }

 private:
  Pattern pattern_;
  std::string content_;
};

// Removes Unicode whitespace from the left and/or right end.
class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& text) const override {
    size_t begin = 0, end = text.size();
    if (left_) {
      while (begin < end) {
        size_t next = begin;
        if (!is_unicode_whitespace(next_code_point(text, next))) break;
        begin = next;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = 0;
        if (!is_unicode_whitespace(previous_code_point(text, end, &start))) break;
        end = start;
      }
    }
    text = text.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const io::json& node, const io::JsonPath& at) {
  if (node.is_null()) return nullptr;
  io::SortedJsonFields spec(node, at);
  const std::string type = spec.get_string("type");
  if (type == "Sequence") {
    const io::json& list = spec.get_list("normalizers");
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      auto step = make_normalizer(list[i], spec.at("normalizers")[i]);
      if (step != nullptr) steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  if (type == "NFC") return std::make_unique<NfcNormalizer>();
  if (type == "NFD") return std::make_unique<NfdNormalizer>();
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(spec.get_string("prepend"));
  if (type == "Replace") {
    return std::make_unique<ReplaceNormalizer>(read_pattern(spec, "pattern"), spec.get_string("content"));
  }
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(spec.get_bool("strip_left", true),
                                             spec.get_bool("strip_right", true));
  }
  spec.fail("type", "unsupported normalizer type '" + type +
                        "' (supported: Sequence, NFC, NFD, Prepend, Replace, Strip)");
}

}  // namespace ranktune::tokenizer
