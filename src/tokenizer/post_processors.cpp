#include "post_processors.h"

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
std::unique_ptr<PostProcessor> make_template(io::SortedJsonFields& spec) {
  std::map<std::string, std::vector<int64_t>> special_ids;
  if (spec.has_value("special_tokens")) {
    io::SortedJsonFields specials = spec.get_object("special_tokens");
    for (const auto& item : specials.object().items()) {
      special_ids[item.key()] = specials.get_object(item.key()).get_int_list("ids");
    }
  }
  const io::json& single = spec.get_list("single");
  const io::JsonPath single_at = spec.at("single");
  std::vector<int64_t> prefix, suffix;
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const io::json& item = single[i];
    if (item.is_object() && item.contains("Sequence")) {
      if (seen_sequence) single_at[i].fail("a single-sequence template may name the sequence only once");
      seen_sequence = true;
      continue;
    }
    if (!item.is_object() || !item.contains("SpecialToken")) {
      single_at[i].fail("expected {\"SpecialToken\": ...} or {\"Sequence\": ...}, got " + item.dump());
    }
    const std::string name = io::SortedJsonFields(item.at("SpecialToken"), single_at[i] / "SpecialToken").get_string("id");
    const auto it = special_ids.find(name);
    if (it == special_ids.end()) single_at[i].fail("special token '" + name + "' is not in special_tokens");
    auto& target = seen_sequence ? suffix : prefix;
    target.insert(target.end(), it->second.begin(), it->second.end());
  }
  return std::make_unique<AffixProcessor>(std::move(prefix), std::move(suffix));
}

// BertProcessing / RobertaProcessing: [cls] A [sep], with "cls"/"sep" given as [token, id].
std::unique_ptr<PostProcessor> make_cls_sep(io::SortedJsonFields& spec) {
  const auto read = [&](const char* key) {
    const io::json& pair = spec.raw(key);
    if (!pair.is_array() || pair.size() != 2 || !pair[1].is_number_integer()) {
      spec.fail(key, "expected [token, id], got " + pair.dump());
    }
    return pair[1].get<int64_t>();
  };
  return std::make_unique<AffixProcessor>(std::vector<int64_t>{read("cls")}, std::vector<int64_t>{read("sep")});
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const io::json& node, const io::JsonPath& at) {
  if (node.is_null()) return nullptr;
  io::SortedJsonFields spec(node, at);
  const std::string type = spec.get_string("type");
  if (type == "TemplateProcessing") return make_template(spec);
  if (type == "BertProcessing" || type == "RobertaProcessing") return make_cls_sep(spec);
  if (type == "ByteLevel") return nullptr;  // adjusts offsets only
  if (type == "Sequence") {
    const io::json& list = spec.get_list("processors");
    std::vector<std::unique_ptr<PostProcessor>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      auto step = make_post_processor(list[i], spec.at("processors")[i]);
      if (step != nullptr) steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceProcessor>(std::move(steps));
  }
  spec.fail("type", "unsupported post-processor type '" + type +
                        "' (supported: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence)");
}

}  // namespace ranktune::tokenizer
