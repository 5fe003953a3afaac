#include "tokenizer/post_processors.h"

#include <map>
#include <string>

namespace ranktune::tokenizer {

void AffixProcessor::process(std::vector<int64_t>& ids) const {
  ids.insert(ids.begin(), prefix_.begin(), prefix_.end());
  ids.insert(ids.end(), suffix_.begin(), suffix_.end());
}

namespace {

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> steps) : steps_(std::move(steps)) {}
  void process(std::vector<int64_t>& ids) const override {
    for (const auto& step : steps_) step->process(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

// TemplateProcessing's "single" template: a list of {"SpecialToken": {"id": name}} and one
// {"Sequence": {"id": "A"}}; names resolve through "special_tokens" to their ids.
std::unique_ptr<PostProcessor> make_template(const json& spec, const JsonPath& at) {
  std::map<std::string, std::vector<int64_t>> special_ids;
  if (spec.contains("special_tokens") && !spec.at("special_tokens").is_null()) {
    const json& specials = spec.at("special_tokens");
    const JsonPath specials_at = at / "special_tokens";
    expect_object(specials, specials_at);
    for (const auto& [name, entry] : specials.items()) {
      const json& ids = required_field(entry, "ids", specials_at / name);
      if (!ids.is_array()) (specials_at / name / "ids").fail("expected a list of ids, got " + json_kind(ids));
      std::vector<int64_t>& out = special_ids[name];
      for (const auto& id : ids) {
        if (!id.is_number_integer()) (specials_at / name / "ids").fail("expected integer ids, got " + id.dump());
        out.push_back(id.get<int64_t>());
      }
    }
  }
  const json& single = required_field(spec, "single", at);
  const JsonPath single_at = at / "single";
  if (!single.is_array()) single_at.fail("expected a list, got " + json_kind(single));
  std::vector<int64_t> prefix, suffix;
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const json& item = single[i];
    if (item.is_object() && item.contains("Sequence")) {
      if (seen_sequence) single_at[i].fail("a single-sequence template may name the sequence only once");
      seen_sequence = true;
      continue;
    }
    if (!item.is_object() || !item.contains("SpecialToken")) {
      single_at[i].fail("expected {\"SpecialToken\": ...} or {\"Sequence\": ...}, got " + item.dump());
    }
    const std::string name = required_string(item.at("SpecialToken"), "id", single_at[i] / "SpecialToken");
    const auto it = special_ids.find(name);
    if (it == special_ids.end()) single_at[i].fail("special token '" + name + "' is not in special_tokens");
    auto& target = seen_sequence ? suffix : prefix;
    target.insert(target.end(), it->second.begin(), it->second.end());
  }
  return std::make_unique<AffixProcessor>(std::move(prefix), std::move(suffix));
}

// BertProcessing / RobertaProcessing: [cls] A [sep], with "cls"/"sep" given as [token, id].
std::unique_ptr<PostProcessor> make_cls_sep(const json& spec, const JsonPath& at) {
  const auto read = [&](const char* key) {
    const json& pair = required_field(spec, key, at);
    if (!pair.is_array() || pair.size() != 2 || !pair[1].is_number_integer()) {
      (at / key).fail("expected [token, id], got " + pair.dump());
    }
    return pair[1].get<int64_t>();
  };
  return std::make_unique<AffixProcessor>(std::vector<int64_t>{read("cls")}, std::vector<int64_t>{read("sep")});
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const json& spec, const JsonPath& at) {
  if (spec.is_null()) return nullptr;
  const std::string type = required_string(spec, "type", at);
  if (type == "TemplateProcessing") return make_template(spec, at);
  if (type == "BertProcessing" || type == "RobertaProcessing") return make_cls_sep(spec, at);
  if (type == "ByteLevel") return nullptr;  // adjusts offsets only
  if (type == "Sequence") {
    const json& list = required_field(spec, "processors", at);
    if (!list.is_array()) (at / "processors").fail("expected a list, got " + json_kind(list));
    std::vector<std::unique_ptr<PostProcessor>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      auto step = make_post_processor(list[i], (at / "processors")[i]);
      if (step != nullptr) steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceProcessor>(std::move(steps));
  }
  (at / "type").fail("unsupported post-processor type '" + type +
                     "' (supported: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence)");
}

}  // namespace ranktune::tokenizer
