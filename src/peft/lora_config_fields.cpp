// LoraConfig's field table and the JSON codec generated from it (adapter_config.json as PEFT 0.12
// writes and reads it).

#include "ranktune/peft/lora_config_fields.h"

#include "ranktune/io/json.h"
#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/strings.h"

#include <cmath>
#include <map>
#include <set>
#include <type_traits>

namespace ranktune::peft {
namespace {

// Values keep their order (a rank_pattern's first matching key wins); to_json sorts the file's keys.
using json = io::ordered_json;
using Kind = LoraConfigField::Kind;
using Written = LoraConfigField::Written;

// ---- codecs: one per kind of value, each writing PEFT's JSON form and reading it back -----------

json number_json(double v) {
  if (std::isfinite(v) && std::floor(v) == v && std::fabs(v) < 9.0e15) return json(static_cast<int64_t>(v));
  return json(v);
}

// A number or boolean read by one JsonFields getter.
template <typename T, Kind K, auto Read, json (*Write)(T) = nullptr>
struct Scalar {
  using Value = T;
  static constexpr Kind kind = K;
  static json write(Value v) {
    if constexpr (Write == nullptr) {
      return v;
    } else {
      return Write(v);
    }
  }
  static Value read(io::JsonFields& f, const std::string& key) { return (f.*Read)(key); }
};
using Integer = Scalar<int64_t, Kind::integer, &io::JsonFields::get_int>;
// get_bool has a with-default overload too: name the one-argument form.
using Boolean = Scalar<bool, Kind::boolean,
                       static_cast<bool (io::JsonFields::*)(const std::string&)>(&io::JsonFields::get_bool)>;
// A float in PEFT (lora_dropout): written as 0.0, not 0.
using Float = Scalar<double, Kind::number, &io::JsonFields::get_number>;
// An int in PEFT that ranktune also takes fractional (lora_alpha): written as 8, or 24.5.
using Scale = Scalar<double, Kind::number, &io::JsonFields::get_number, number_json>;

// A value PEFT writes as null when it is unset.
template <typename T, Kind K, auto Read>
struct Nullable {
  using Value = std::optional<T>;
  static constexpr Kind kind = K;
  static json write(const Value& v) { return v ? json(*v) : json(nullptr); }
  static Value read(io::JsonFields& f, const std::string& key) {
    if (!f.has_value(key)) return std::nullopt;
    return (f.*Read)(key);
  }
};
using OptionalString = Nullable<std::string, Kind::string, &io::JsonFields::get_string>;
using Strings = Nullable<std::vector<std::string>, Kind::strings, &io::JsonFields::get_string_list>;
using Integers = Nullable<std::vector<int64_t>, Kind::integers, &io::JsonFields::get_int_list>;

struct Bias {
  using Value = LoraBias;
  static constexpr Kind kind = Kind::string;
  static std::vector<std::string> choices() { return {"none", "all", "lora_only"}; }
  static json write(Value v) { return to_string(v); }
  static Value read(io::JsonFields& f, const std::string& key) {
    const std::string text = f.get_string(key);
    for (LoraBias b : {LoraBias::none, LoraBias::all, LoraBias::lora_only}) {
      if (to_string(b) == text) return b;
    }
    f.fail(key, "unknown value '" + text + "'; allowed: " + join(choices()));
  }
};

struct Selector {
  using Value = ModuleSelector;
  static constexpr Kind kind = Kind::selector;
  static json write(const Value& s) {
    switch (s.kind) {
      case ModuleSelector::Kind::none: return nullptr;
      case ModuleSelector::Kind::names: return s.names;
      case ModuleSelector::Kind::regex: return s.regex;
      case ModuleSelector::Kind::all_linear: return ModuleSelector::kAllLinear;
    }
    return nullptr;
  }
  static Value read(io::JsonFields& f, const std::string& key) {
    if (!f.has_value(key)) return {};
    const auto& v = f.raw(key);
    if (v.is_string()) return ModuleSelector::from_string(v.get<std::string>());
    return ModuleSelector(f.get_string_list(key));
  }
};

struct Init {
  using Value = LoraInit;
  static constexpr Kind kind = Kind::init;
  static json write(const Value& init) {
    if (init.kind == LoraInit::Kind::lora) return true;
    if (init.kind == LoraInit::Kind::off) return false;
    return init.to_string();
  }
  static Value read(io::JsonFields& f, const std::string& key) {
    const auto& v = f.raw(key);
    if (v.is_boolean()) return LoraInit::parse(v.get<bool>() ? "true" : "false");
    if (!v.is_string()) f.fail(key, "expected true, false or a method name, got " + io::json_type_name(v));
    return LoraInit::parse(v.get<std::string>());
  }
};

// {module key: value} objects, in file order (the first matching key wins).
template <typename Pairs, Kind K, auto Get>
struct Pattern {
  using Value = Pairs;
  static constexpr Kind kind = K;
  static json write(const Value& pairs) {
    json j = json::object();
    for (const auto& [k, v] : pairs) j[k] = number_json(static_cast<double>(v));
    return j;
  }
  static Value read(io::JsonFields& f, const std::string& key) {
    Value out;
    if (!f.has_value(key)) return out;
    const auto& v = f.raw(key);
    if (!v.is_object()) f.fail(key, "expected an object of module name -> value");
    io::JsonFields inner(v, f.source());
    for (const auto& item : v.items()) out.emplace_back(item.key(), (inner.*Get)(item.key()));
    return out;
  }
};
using Ranks = Pattern<RankPattern, Kind::rank_pattern, &io::JsonFields::get_int>;
using Alphas = Pattern<AlphaPattern, Kind::alpha_pattern, &io::JsonFields::get_number>;

template <typename Codec, typename = void>
struct ChoicesOf {
  static std::vector<std::string> get() { return {}; }
};
template <typename Codec>
struct ChoicesOf<Codec, std::void_t<decltype(Codec::choices())>> {
  static std::vector<std::string> get() { return Codec::choices(); }
};

// ---- the table -----------------------------------------------------------------------------------

struct Row {
  LoraConfigField field;
  json (*write)(const LoraConfig&);
  void (*read)(io::JsonFields&, LoraConfig&);
};

// One row: the field's accessor, its codec (checked against the TORCH_ARG's type), how it is
// written, why it is not a recipe key ("" when it is one), and its help.
#define RANKTUNE_LORA_FIELD(NAME, CODEC, WRITTEN, OUTSIDE_RECIPES, HELP)                                   \
  Row {                                                                                                    \
    LoraConfigField{#NAME, CODEC::kind, Written::WRITTEN, HELP, ChoicesOf<CODEC>::get(), OUTSIDE_RECIPES}, \
        [](const LoraConfig& c) -> json {                                                                  \
          static_assert(std::is_same_v<std::decay_t<decltype(c.NAME())>, CODEC::Value>,                    \
                        "codec of " #NAME " does not fit its type");                                       \
          return CODEC::write(c.NAME());                                                                   \
        },                                                                                                 \
        [](io::JsonFields& f, LoraConfig& c) { c.NAME(CODEC::read(f, #NAME)); }                            \
  }

const std::vector<Row>& rows() {
  static const std::vector<Row> table = {
      RANKTUNE_LORA_FIELD(r, Integer, always, "",
                          "Rank of the update B·A. Trainable parameters and adapter compute grow linearly with it."),
      RANKTUNE_LORA_FIELD(target_modules, Selector, always, "",
                          "Modules to adapt: a list of names or dotted suffixes, a regex matching the whole "
                          "name, or `all-linear` (every linear layer but the output head). Required: ranktune "
                          "has no per-model default."),
      RANKTUNE_LORA_FIELD(exclude_modules, Selector, when_set, "",
                          "Modules never to adapt (the same forms as target_modules, no `all-linear`)."),
      RANKTUNE_LORA_FIELD(lora_alpha, Scale, always, "",
                          "Scaling numerator: updates are multiplied by lora_alpha / r (or / sqrt(r) with "
                          "use_rslora)."),
      RANKTUNE_LORA_FIELD(lora_dropout, Float, always, "",
                          "Dropout on the adapter's input (the base path never sees it). Above 0 DoRA computes "
                          "the base product on the dropped input too (PEFT's path): one more GEMM per layer."),
      RANKTUNE_LORA_FIELD(fan_in_fan_out, Boolean, always, "set by the model: true for GPT-2's Conv1D layers",
                          "The base weight is stored [in, out] (GPT-2's Conv1D) instead of [out, in]."),
      RANKTUNE_LORA_FIELD(bias, Bias, always, "",
                          "Which biases train: none, every bias of the model, or those of adapted layers."),
      RANKTUNE_LORA_FIELD(use_rslora, Boolean, always, "", "Rank-stabilised scaling lora_alpha / sqrt(r)."),
      RANKTUNE_LORA_FIELD(modules_to_save, Strings, always, "",
                          "Modules trained in full and saved with the adapter (e.g. [lm_head]); a name matches "
                          "the modules whose qualified name ends in it, as in PEFT. Each adapter trains a copy; "
                          "the module, and a module tied to it, stay as they were."),
      RANKTUNE_LORA_FIELD(init_lora_weights, Init, always, "",
                          "`true` (A kaiming-uniform, B zero: the adapter starts as a no-op), `false`, `gaussian`, "
                          "`pissa`, `pissa_niter_K`, `olora`. PiSSA/OLoRA start from W's principal directions "
                          "(an SVD/QR per layer at start-up)."),
      RANKTUNE_LORA_FIELD(layers_to_transform, Integers, always, "",
                          "Only adapt the layers with these indices (the index follows layers_pattern)."),
      RANKTUNE_LORA_FIELD(layers_pattern, Strings, always, "",
                          "The name(s) of the layer list whose index layers_to_transform means (e.g. layers)."),
      RANKTUNE_LORA_FIELD(rank_pattern, Ranks, always, "",
                          "Per-module rank {module key: r}; a key matches the names ending in it (regex "
                          "`(.*\\.)?(key)$`), the first match wins."),
      RANKTUNE_LORA_FIELD(alpha_pattern, Alphas, always, "", "Per-module lora_alpha, as rank_pattern."),
      RANKTUNE_LORA_FIELD(use_dora, Boolean, always, "",
                          "DoRA: a learned magnitude per output row on top of the LoRA direction (almost no "
                          "extra cost here)."),
      RANKTUNE_LORA_FIELD(ensure_weight_tying, Boolean, when_set, "",
                          "Keep tied weights tied: modules_to_save on a tied embedding or output head trains one "
                          "copy that both ends share (PEFT >= 0.18)."),
      RANKTUNE_LORA_FIELD(task_type, OptionalString, always, "set by the trainer: CAUSAL_LM",
                          "The model's task, e.g. CAUSAL_LM."),
      RANKTUNE_LORA_FIELD(inference_mode, Boolean, always,
                          "set by the trainer: false while training; saved adapters say true, as PEFT writes them",
                          "Nothing trains (PEFT writes true in saved configs)."),
      RANKTUNE_LORA_FIELD(base_model_name_or_path, OptionalString, always, "set by the trainer: model.path",
                          "The base model the adapter was trained on."),
      RANKTUNE_LORA_FIELD(revision, OptionalString, always, "unused: ranktune reads local model directories",
                          "The base model's revision on the Hugging Face Hub."),
  };
  return table;
}

#undef RANKTUNE_LORA_FIELD

const Row& row_of(const std::string& name) {
  for (const Row& row : rows()) {
    if (row.field.name == name) return row;
  }
  throw Error("not a LoraConfig field", ErrorContext{"", name, -1});
}

const json& default_value(const Row& row) {
  static const std::map<std::string, json> defaults = [] {
    std::map<std::string, json> out;
    const LoraConfig fresh;
    for (const Row& r : rows()) out[r.field.name] = r.write(fresh);
    return out;
  }();
  return defaults.at(row.field.name);
}

// PEFT 0.12 fields that ranktune keeps verbatim but does not interpret, with PEFT's defaults.
const std::map<std::string, std::string>& passthrough_defaults() {
  static const std::map<std::string, std::string> defaults = {
      {"auto_mapping", "null"},      {"layer_replication", "null"}, {"loftq_config", "{}"},
      {"megatron_config", "null"},   {"megatron_core", "\"megatron.core\""},
  };
  return defaults;
}

// Fields of later PEFT versions that are kept when present (and not written otherwise, so that
// PEFT 0.12, which rejects unknown fields, still loads our files).
const std::set<std::string>& later_peft_fields() {
  static const std::set<std::string> fields = {
      "lora_bias",       "use_qalora",   "qalora_group_size", "eva_config",
      "corda_config",    "trainable_token_indices", "target_parameters"};
  return fields;
}

}  // namespace

// ---- the public view -----------------------------------------------------------------------------

const std::vector<LoraConfigField>& lora_config_fields() {
  static const std::vector<LoraConfigField> fields = [] {
    std::vector<LoraConfigField> out;
    for (const Row& row : rows()) out.push_back(row.field);
    return out;
  }();
  return fields;
}

const LoraConfigField* find_lora_config_field(const std::string& name) {
  for (const auto& f : lora_config_fields()) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

std::string LoraConfigField::value_json(const LoraConfig& config) const { return row_of(name).write(config).dump(); }

std::string LoraConfigField::default_json() const { return default_value(row_of(name)).dump(); }

void LoraConfigField::set_from_json(LoraConfig& config, const std::string& json_text) const {
  json object = json::object();
  object[name] = io::parse_json(json_text, "");
  io::JsonFields fields(object, "");
  row_of(name).read(fields, config);
}

std::string to_string(LoraConfigField::Kind kind) {
  switch (kind) {
    case Kind::integer: return "integer";
    case Kind::number: return "number";
    case Kind::boolean: return "boolean";
    case Kind::string: return "string";
    case Kind::strings: return "strings";
    case Kind::integers: return "integers";
    case Kind::selector: return "selector";
    case Kind::init: return "init";
    case Kind::rank_pattern: return "rank_pattern";
    case Kind::alpha_pattern: return "alpha_pattern";
  }
  return "?";
}

std::string to_string(LoraConfigField::Written written) {
  return written == Written::always ? "always" : "when_set";
}

// ---- adapter_config.json -------------------------------------------------------------------------

std::string LoraConfig::to_json() const {
  json j = json::object();
  for (const Row& row : rows()) {
    json value = row.write(*this);
    if (row.field.written == Written::when_set && value == default_value(row)) continue;
    j[row.field.name] = std::move(value);
  }
  j["peft_type"] = "LORA";
  for (const auto& [k, v] : passthrough_defaults()) j[k] = json::parse(v);
  for (const auto& [k, v] : passthrough_) j[k] = json::parse(v);
  // Keys sorted at every level, as PEFT's json.dumps(sort_keys=True) writes them.
  return nlohmann::json::parse(j.dump()).dump(2);
}

LoraConfig LoraConfig::from_json(const std::string& text, const std::string& source) {
  const json root = io::parse_json(text, source);
  io::JsonFields f(root, source);
  LoraConfig c;
  try {
    if (f.has_value("peft_type")) {
      const std::string type = f.get_string("peft_type");
      if (type != "LORA") f.fail("peft_type", "is '" + type + "'; ranktune reads LoRA adapters (\"LORA\") only");
    }
    for (const Row& row : rows()) {
      if (f.has(row.field.name)) row.read(f, c);
    }
    for (const auto& [key, unused] : passthrough_defaults()) {
      if (f.has(key)) c.passthrough_[key] = f.raw(key).dump();
    }
    for (const auto& key : later_peft_fields()) {
      if (f.has(key)) c.passthrough_[key] = f.raw(key).dump();
    }
    if (f.has("lora_bias") && root.at("lora_bias") == true) {
      f.fail("lora_bias", "is true; a trainable bias on lora_B is not supported by ranktune");
    }
    if (!f.is_null("layer_replication")) {
      f.fail("layer_replication", "is set; layer replication is not supported by ranktune");
    }
    for (const auto& key : f.unread()) {
      log_warning((source.empty() ? std::string("adapter config") : source) + ": ignoring unknown field '" +
                  key + "' (not a LoraConfig field ranktune knows)");
    }
    c.validate();
  } catch (const Error& e) {
    throw e.with_context(ErrorContext{source, "", -1});
  }
  return c;
}

}  // namespace ranktune::peft
