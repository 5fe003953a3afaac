#include "ranktune/peft/targets.h"

#include "ranktune/core/error.h"
#include "ranktune/core/regex.h"
#include "ranktune/core/strings.h"

#include <algorithm>
#include <optional>
#include <set>

namespace ranktune::peft {
namespace {

struct PatternEntry {
  Regex regex;
  size_t index;  // into rank_pattern or alpha_pattern
};

std::vector<PatternEntry> compile_patterns(const std::vector<std::string>& keys) {
  std::vector<PatternEntry> out;
  for (size_t i = 0; i < keys.size(); ++i) out.push_back({Regex("(.*\\.)?(" + keys[i] + ")$"), i});
  return out;
}

std::optional<size_t> first_pattern_match(const std::vector<PatternEntry>& patterns, const std::string& name) {
  for (const auto& p : patterns) {
    if (p.regex.match_prefix(name)) return p.index;
  }
  return std::nullopt;
}

}  // namespace

bool name_matches_suffix(const std::string& name, const std::string& entry) {
  if (name == entry) return true;
  return name.size() > entry.size() && name.compare(name.size() - entry.size(), entry.size(), entry) == 0 &&
         name[name.size() - entry.size() - 1] == '.';
}

struct TargetMatcher::Impl {
  LoraConfig config;
  ModuleSelector targets;  // all-linear expanded to names
  std::optional<Regex> target_regex;
  std::optional<Regex> exclude_regex;
  std::vector<Regex> layer_patterns;  // from layers_pattern (or PEFT's default)
  std::vector<PatternEntry> rank_patterns;
  std::vector<PatternEntry> alpha_patterns;

  // PEFT: the layer index is the number after "<layers_pattern>." (default: any component).
  bool layer_selected(const std::string& name) const {
    if (!config.layers_to_transform()) return true;
    const auto& wanted = *config.layers_to_transform();
    if (wanted.empty()) return true;
    for (const auto& pattern : layer_patterns) {
      std::string digits;
      if (pattern.match_prefix(name, 1, &digits)) {
        const int64_t index = std::stoll(digits);
        return std::find(wanted.begin(), wanted.end(), index) != wanted.end();
      }
    }
    return false;
  }
};

TargetMatcher::TargetMatcher(const LoraConfig& config, const std::vector<std::string>& linear_names,
                             const std::string& output_head)
    : impl_(std::make_unique<Impl>()) {
  config.validate();
  Impl& m = *impl_;
  m.config = config;
  m.targets = config.target_modules();
  if (m.targets.kind == ModuleSelector::Kind::all_linear) {
    std::set<std::string> base_names;
    for (const auto& n : linear_names) base_names.insert(n.substr(n.rfind('.') + 1));
    base_names.erase(output_head);
    m.targets = ModuleSelector(std::vector<std::string>(base_names.begin(), base_names.end()));
  }
  if (m.targets.kind == ModuleSelector::Kind::regex) m.target_regex.emplace(m.targets.regex);
  if (config.exclude_modules().kind == ModuleSelector::Kind::regex) m.exclude_regex.emplace(config.exclude_modules().regex);
  if (config.layers_pattern() && !config.layers_pattern()->empty()) {
    for (const auto& p : *config.layers_pattern()) m.layer_patterns.emplace_back(".*\\." + p + "\\.(\\d+)\\.");
  } else {
    m.layer_patterns.emplace_back(".*\\.[^.]*\\.(\\d+)\\.");
  }
  std::vector<std::string> keys;
  for (const auto& [k, v] : config.rank_pattern()) keys.push_back(k);
  m.rank_patterns = compile_patterns(keys);
  keys.clear();
  for (const auto& [k, v] : config.alpha_pattern()) keys.push_back(k);
  m.alpha_patterns = compile_patterns(keys);
}

TargetMatcher::~TargetMatcher() = default;
TargetMatcher::TargetMatcher(TargetMatcher&&) noexcept = default;
TargetMatcher& TargetMatcher::operator=(TargetMatcher&&) noexcept = default;

bool TargetMatcher::is_excluded(const std::string& name) const {
  const ModuleSelector& ex = impl_->config.exclude_modules();
  switch (ex.kind) {
    case ModuleSelector::Kind::regex: return impl_->exclude_regex->full_match(name);
    case ModuleSelector::Kind::names:
      return std::any_of(ex.names.begin(), ex.names.end(), [&](const std::string& e) { return name_matches_suffix(name, e); });
    default: return false;
  }
}

bool TargetMatcher::is_target(const std::string& name) const {
  if (is_excluded(name)) return false;
  const ModuleSelector& t = impl_->targets;
  switch (t.kind) {
    case ModuleSelector::Kind::regex: return impl_->target_regex->full_match(name);
    case ModuleSelector::Kind::names: {
      // As in PEFT: an exact name is taken as is; a suffix match is then filtered by layer.
      if (std::find(t.names.begin(), t.names.end(), name) != t.names.end()) return true;
      const bool suffix = std::any_of(t.names.begin(), t.names.end(),
                                      [&](const std::string& e) { return name_matches_suffix(name, e); });
      return suffix && impl_->layer_selected(name);
    }
    default: return false;
  }
}

bool TargetMatcher::is_module_to_save(const std::string& name) const {
  const auto& to_save = impl_->config.modules_to_save();
  if (!to_save) return false;
  // PEFT's `key.endswith(entry)`: a plain suffix, so "norm" also names "input_layernorm".
  return std::any_of(to_save->begin(), to_save->end(), [&](const std::string& e) { return ends_with(name, e); });
}

AdapterOptions TargetMatcher::adapter_options_for(const std::string& name) const {
  const LoraConfig& c = impl_->config;
  int64_t r = c.r();
  double alpha = c.lora_alpha();
  if (auto i = first_pattern_match(impl_->rank_patterns, name)) r = c.rank_pattern()[*i].second;
  if (auto i = first_pattern_match(impl_->alpha_patterns, name)) alpha = c.alpha_pattern()[*i].second;
  return AdapterOptions(c).r(r).lora_alpha(alpha);
}

}  // namespace ranktune::peft
