#include "pattern.h"

#include <algorithm>

namespace ranktune::tokenizer {

Pattern Pattern::literal(std::string text) {
  Pattern p;
  p.literal_ = std::move(text);
  return p;
}

Pattern Pattern::regex(const std::string& pattern) {
  Pattern p;
  p.regex_ = std::make_shared<const Regex>(pattern);
  return p;
}

Pattern read_pattern(io::SortedJsonFields& spec, const std::string& key) {
  const io::json& value = spec.raw(key);
  const io::JsonPath here = spec.at(key);
  if (value.is_object() && value.size() == 1) {
    io::SortedJsonFields fields(value, here);
    if (fields.has("String")) return Pattern::literal(fields.get_string("String"));
    if (fields.has("Regex")) {
      const std::string regex = fields.get_string("Regex");
      try {
        return Pattern::regex(regex);
      } catch (const Error& e) {
        throw e.with_context(here.context());
      }
    }
  }
  here.fail("expected {\"String\": ...} or {\"Regex\": ...}, got " + value.dump());
}

std::vector<ByteRange> Pattern::find_all(std::string_view text) const {
  if (regex_ != nullptr) return regex_->find_all(text);
  std::vector<ByteRange> matches;
  if (literal_.empty()) return matches;
  size_t pos = text.find(literal_);
  while (pos != std::string_view::npos) {
    matches.emplace_back(pos, pos + literal_.size());
    pos = text.find(literal_, pos + literal_.size());
  }
  return matches;
}

std::string Pattern::replace_all(std::string_view text, std::string_view replacement) const {
  const std::vector<ByteRange> matches = find_all(text);
  if (matches.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size() + matches.size() * replacement.size());
  size_t previous = 0;
  for (const auto& [begin, end] : matches) {
    out.append(text.substr(previous, begin - previous));
    out.append(replacement);
    previous = end;
  }
  out.append(text.substr(previous));
  return out;
}

std::vector<ByteRange> split_ranges(std::string_view text, const std::vector<ByteRange>& matches,
                                    SplitBehavior behavior, bool invert) {
  // The text as alternating (range, is_match) parts.
  struct Part {
    ByteRange range;
    bool is_match;
  };
  std::vector<Part> parts;
  parts.reserve(2 * matches.size() + 1);
  size_t previous = 0;
  for (const auto& m : matches) {
    if (m.first != previous) parts.push_back({{previous, m.first}, invert});
    parts.push_back({m, !invert});
    previous = m.second;
  }
  if (previous != text.size()) parts.push_back({{previous, text.size()}, invert});

  std::vector<ByteRange> out;
  out.reserve(parts.size());
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::removed:
      for (const auto& p : parts) {
        if (!p.is_match) out.push_back(p.range);
      }
      break;
    case SplitBehavior::isolated:
      for (const auto& p : parts) out.push_back(p.range);
      break;
    case SplitBehavior::contiguous:
      for (size_t i = 0; i < parts.size(); ++i) {
        if (i > 0 && parts[i].is_match == previous_match) {
          out.back().second = parts[i].range.second;
        } else {
          out.push_back(parts[i].range);
        }
        previous_match = parts[i].is_match;
      }
      break;
    case SplitBehavior::merged_with_previous:
      for (const auto& p : parts) {
        if (p.is_match && !previous_match && !out.empty()) {
          out.back().second = p.range.second;
        } else {
          out.push_back(p.range);
        }
        previous_match = p.is_match;
      }
      break;
    case SplitBehavior::merged_with_next:
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().first = it->range.first;
        } else {
          out.push_back(it->range);
        }
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
  }
  std::vector<ByteRange> non_empty;
  non_empty.reserve(out.size());
  for (const auto& r : out) {
    if (r.second > r.first) non_empty.push_back(r);
  }
  return non_empty;
}

}  // namespace ranktune::tokenizer
