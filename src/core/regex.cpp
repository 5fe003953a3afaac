#include "ranktune/core/regex.h"

#include "ranktune/core/error.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace ranktune {

struct Regex::Impl {
  pcre2_code* code = nullptr;
  ~Impl() {
    if (code != nullptr) pcre2_code_free(code);
  }

  // Runs one match with `options`; returns the match data (caller frees) or nullptr.
  pcre2_match_data* run(std::string_view subject, uint32_t options) const {
    pcre2_match_data* data = pcre2_match_data_create_from_pattern(code, nullptr);
    const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(),
                               0, options, data, nullptr);
    if (rc < 0) {
      pcre2_match_data_free(data);
      return nullptr;
    }
    return data;
  }
};

Regex::Regex(std::string pattern) : pattern_(std::move(pattern)), impl_(std::make_unique<Impl>()) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(),
                              PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (impl_->code == nullptr) {
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(error_code, buffer, sizeof(buffer));
    throw Error(c10::str("invalid regular expression '", pattern_, "' at offset ", error_offset,
                         ": ", reinterpret_cast<const char*>(buffer)));
  }
  // JIT is an optimisation only: when it is unavailable the interpreter is used.
  pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

bool Regex::full_match(std::string_view subject) const {
  pcre2_match_data* data = impl_->run(subject, PCRE2_ANCHORED | PCRE2_ENDANCHORED);
  if (data == nullptr) return false;
  pcre2_match_data_free(data);
  return true;
}

bool Regex::match_prefix(std::string_view subject, int group, std::string* captured) const {
  pcre2_match_data* data = impl_->run(subject, PCRE2_ANCHORED);
  if (data == nullptr) return false;
  if (group > 0 && captured != nullptr) {
    captured->clear();
    if (static_cast<uint32_t>(group) < pcre2_get_ovector_count(data)) {
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data);
      if (ov[2 * group] != PCRE2_UNSET) {
        captured->assign(subject.substr(ov[2 * group], ov[2 * group + 1] - ov[2 * group]));
      }
    }
  }
  pcre2_match_data_free(data);
  return true;
}

bool Regex::search(std::string_view subject) const {
  pcre2_match_data* data = impl_->run(subject, 0);
  if (data == nullptr) return false;
  pcre2_match_data_free(data);
  return true;
}

namespace {

// Python's re.finditer: calls on_match(ovector) for each successive non-overlapping match.
// Lookarounds see the whole subject; after an empty match the next may not be empty at the same
// place (Perl's rule).
template <typename OnMatch>
void for_each_match(const pcre2_code* code, const std::string& pattern, std::string_view subject, OnMatch on_match) {
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(code, nullptr);
  const auto* text = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data);
  PCRE2_SIZE offset = 0;
  uint32_t options = 0;  // the first call checks UTF-8 validity; later ones skip the O(n) check
  while (offset <= subject.size()) {
    const int rc = pcre2_match(code, text, subject.size(), offset, options, data, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH && (options & PCRE2_NOTEMPTY_ATSTART) != 0) {
      // No non-empty match here after an empty one: step over one character and go on.
      options = PCRE2_NO_UTF_CHECK;
      if (offset >= subject.size()) break;
      ++offset;
      while (offset < subject.size() && (static_cast<unsigned char>(subject[offset]) & 0xC0) == 0x80) ++offset;
      continue;
    }
    if (rc < 0) {
      if (rc != PCRE2_ERROR_NOMATCH) {
        PCRE2_UCHAR buffer[256];
        pcre2_get_error_message(rc, buffer, sizeof(buffer));
        pcre2_match_data_free(data);
        throw Error(c10::str("regular expression '", pattern, "' failed: ", reinterpret_cast<const char*>(buffer)));
      }
      break;
    }
    on_match(ov, pcre2_get_ovector_count(data));
    options = PCRE2_NO_UTF_CHECK;
    if (ov[0] == ov[1]) options |= PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED;
    offset = ov[1];
  }
  pcre2_match_data_free(data);
}

}  // namespace

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view subject) const {
  std::vector<std::pair<size_t, size_t>> matches;
  for_each_match(impl_->code, pattern_, subject, [&](const PCRE2_SIZE* ov, uint32_t) { matches.emplace_back(ov[0], ov[1]); });
  return matches;
}

std::vector<RegexMatch> Regex::find_all(std::string_view subject, int group) const {
  std::vector<RegexMatch> matches;
  for_each_match(impl_->code, pattern_, subject, [&](const PCRE2_SIZE* ov, uint32_t count) {
    RegexMatch m{ov[0], ov[1], std::nullopt};
    if (group > 0 && static_cast<uint32_t>(group) < count && ov[2 * group] != PCRE2_UNSET) {
      m.group = std::string(subject.substr(ov[2 * group], ov[2 * group + 1] - ov[2 * group]));
    }
    matches.push_back(std::move(m));
  });
  return matches;
}

int Regex::capture_count() const {
  uint32_t count = 0;
  pcre2_pattern_info(impl_->code, PCRE2_INFO_CAPTURECOUNT, &count);
  return static_cast<int>(count);
}

}  // namespace ranktune
