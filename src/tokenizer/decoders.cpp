#include "decoders.h"

#include "ranktune/core/utf8.h"
#include "byte_level.h"
#include "pattern.h"
#include "utf8.h"

#include <utility>

namespace ranktune::tokenizer {

namespace {

constexpr const char* kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& step : steps_) step->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

// Maps byte-level characters back to bytes (a token with any other character keeps its own
// bytes) and joins everything into one string, invalid UTF-8 replaced by U+FFFD.
class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    std::string token_bytes;
    for (const auto& token : tokens) {
      token_bytes.clear();
      bool mapped = true;
      size_t pos = 0;
      while (pos < token.size()) {
        const int b = byte_level_byte(next_code_point(token, pos));
        if (b < 0) {
          mapped = false;
          break;
        }
        token_bytes += static_cast<char>(b);
      }
      bytes += mapped ? token_bytes : token;
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(Pattern pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& token : tokens) token = pattern_.replace_all(token, content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

// Runs of <0xNN> tokens become the text they encode; a run that is not valid UTF-8 becomes one
// U+FFFD per byte.
class ByteFallbackDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;
    size_t run_length = 0;
    const auto flush = [&] {
      if (run_length == 0) return;
      if (find_invalid_utf8(run) == std::string::npos) {
        out.push_back(run);
      } else {
        for (size_t i = 0; i < run_length; ++i) out.emplace_back(kReplacementCharacter);
      }
      run.clear();
      run_length = 0;
    };
    for (auto& token : tokens) {
      int byte = -1;
      if (token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>') byte = parse_hex_byte(token[3], token[4]);
      if (byte >= 0) {
        run += static_cast<char>(byte);
        ++run_length;
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    tokens = std::move(out);
  }

 private:
  static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  static int parse_hex_byte(char high, char low) {
    const int h = hex_digit(high), l = hex_digit(low);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string joined;
    for (const auto& token : tokens) joined += token;
    tokens.assign(1, std::move(joined));
  }
};

// Removes up to `start` leading and `stop` trailing copies of one character from every token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& token : tokens) {
      size_t begin = 0, end = token.size();
      for (size_t i = 0; i < start_ && begin < end; ++i) {
        size_t next = begin;
        if (next_code_point(token, next) != content_) break;
        begin = next;
      }
      for (size_t i = 0; i < stop_ && end > begin; ++i) {
        size_t previous = 0;
        if (previous_code_point(token, end, &previous) != content_) break;
        end = previous;
      }
      token = token.substr(begin, end - begin);
    }
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

// The replacement character becomes a space, except in the first token when a prefix was
// prepended (tokenizers drops every replacement character of that token).
class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool drop_in_first) : replacement_(std::move(replacement)), drop_in_first_(drop_in_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    const Pattern marker = Pattern::literal(replacement_);
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = marker.replace_all(tokens[i], i == 0 && drop_in_first_ ? "" : " ");
    }
  }

 private:
  std::string replacement_;
  bool drop_in_first_;
};

char32_t single_character(const std::string& text, const io::JsonPath& at) {
  size_t pos = 0;
  const char32_t cp = text.empty() ? 0 : next_code_point(text, pos);
  if (text.empty() || pos != text.size()) at.fail("expected a single character, got '" + text + "'");
  return cp;
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const io::json& node, const io::JsonPath& at) {
  if (node.is_null()) return nullptr;
  io::SortedJsonFields spec(node, at);
  const std::string type = spec.get_string("type");
  if (type == "Sequence") {
    const io::json& list = spec.get_list("decoders");
    std::vector<std::unique_ptr<Decoder>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      auto step = make_decoder(list[i], spec.at("decoders")[i]);
      if (step != nullptr) steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Replace") {
    return std::make_unique<ReplaceDecoder>(read_pattern(spec, "pattern"), spec.get_string("content"));
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    return std::make_unique<StripDecoder>(single_character(spec.get_string("content"), spec.at("content")),
                                          static_cast<size_t>(spec.get_index("start", 0)),
                                          static_cast<size_t>(spec.get_index("stop", 0)));
  }
  if (type == "Metaspace") {
    bool prepends = spec.get_bool("add_prefix_space", true);
    if (const auto scheme = spec.get_optional_string("prepend_scheme")) prepends = *scheme != "never";
    return std::make_unique<MetaspaceDecoder>(spec.get_string("replacement"), prepends);
  }
  spec.fail("type", "unsupported decoder type '" + type +
                        "' (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace)");
}

}  // namespace ranktune::tokenizer
