#include "ranktune/peft/lora_config.h"

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/regex.h"
#include "ranktune/io/file.h"
#include "ranktune/io/json.h"

#include <cmath>
#include <filesystem>

namespace ranktune::peft {
namespace {

using io::ordered_json;
using json = nlohmann::json;

const char* const kAllLinear = "all-linear";

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

Error field_error(const std::string& field, const std::string& message) {
  return Error(message, ErrorContext{"", field, -1});
}

// Python's repr-like spelling of a number for messages: 8 rather than 8.000000.
std::string number_text(double v) { return json(v).dump(); }

json number_json(double v) {
  if (std::isfinite(v) && std::floor(v) == v && std::fabs(v) < 9.0e15) return json(static_cast<int64_t>(v));
  return json(v);
}

json selector_json(const ModuleSelector& s) {
  switch (s.kind) {
    case ModuleSelector::Kind::none: return nullptr;
    case ModuleSelector::Kind::names: return json(s.names);
    case ModuleSelector::Kind::regex: return json(s.regex);
    case ModuleSelector::Kind::all_linear: return json(kAllLinear);
  }
  return nullptr;
}

ModuleSelector selector_from(io::JsonFields& f, const std::string& key) {
  if (!f.has_value(key)) return {};
  const auto& v = f.raw(key);
  if (v.is_string()) return ModuleSelector::from_string(v.get<std::string>());
  return ModuleSelector(f.get_string_list(key));
}

}  // namespace

// ---- ModuleSelector ----------------------------------------------------------------------------

ModuleSelector::ModuleSelector(std::vector<std::string> module_names)
    : kind(Kind::names), names(std::move(module_names)) {}
ModuleSelector::ModuleSelector(std::initializer_list<std::string> module_names)
    : kind(Kind::names), names(module_names) {}
ModuleSelector::ModuleSelector(const char* regex_or_all_linear)
    : ModuleSelector(from_string(regex_or_all_linear)) {}
ModuleSelector::ModuleSelector(const std::string& regex_or_all_linear)
    : ModuleSelector(from_string(regex_or_all_linear)) {}

ModuleSelector ModuleSelector::from_string(const std::string& text) {
  ModuleSelector s;
  if (text == kAllLinear) {
    s.kind = Kind::all_linear;
  } else {
    s.kind = Kind::regex;
    s.regex = text;
  }
  return s;
}

// ---- LoraInit ----------------------------------------------------------------------------------

LoraInit LoraInit::parse(const std::string& text) {
  LoraInit init;
  if (text == "true" || text == "True") {
    init.kind = Kind::lora;
  } else if (text == "false" || text == "False") {
    init.kind = Kind::off;
  } else if (text == "gaussian") {
    init.kind = Kind::gaussian;
  } else if (text == "pissa") {
    init.kind = Kind::pissa;
  } else if (text == "olora") {
    init.kind = Kind::olora;
  } else if (text.rfind("pissa_niter_", 0) == 0) {
    const std::string digits = text.substr(12);
    const bool numeric = !digits.empty() && digits.size() < 9 &&
                         digits.find_first_not_of("0123456789") == std::string::npos;
    if (!numeric) {
      throw field_error("init_lora_weights",
                        "'" + text + "' is not valid: the form is pissa_niter_<K> with K a non-negative integer");
    }
    init.kind = Kind::pissa_fast;
    init.niter = std::stoll(digits);
  } else {
    throw field_error("init_lora_weights",
                      "unknown initialisation '" + text +
                          "'; allowed: true, false, \"gaussian\", \"pissa\", \"pissa_niter_<K>\", \"olora\"");
  }
  return init;
}

std::string LoraInit::to_string() const {
  switch (kind) {
    case Kind::lora: return "true";
    case Kind::off: return "false";
    case Kind::gaussian: return "gaussian";
    case Kind::pissa: return "pissa";
    case Kind::pissa_fast: return "pissa_niter_" + std::to_string(niter);
    case Kind::olora: return "olora";
  }
  return "true";
}

std::string to_string(LoraBias bias) {
  switch (bias) {
    case LoraBias::none: return "none";
    case LoraBias::all: return "all";
    case LoraBias::lora_only: return "lora_only";
  }
  return "none";
}

// ---- validation --------------------------------------------------------------------------------

double LoraConfig::scaling_for(int64_t rank, double alpha) const {
  return use_rslora_ ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

void LoraConfig::validate() const {
  if (r_ <= 0) throw field_error("r", "must be a positive integer, got " + std::to_string(r_));
  if (!(lora_alpha_ > 0) || !std::isfinite(lora_alpha_)) {
    throw field_error("lora_alpha", "must be a positive number, got " + number_text(lora_alpha_));
  }
  if (!(lora_dropout_ >= 0.0 && lora_dropout_ < 1.0)) {
    throw field_error("lora_dropout", "must be in [0, 1), got " + number_text(lora_dropout_));
  }
  auto check_selector = [](const ModuleSelector& s, const std::string& field) {
    if (s.kind == ModuleSelector::Kind::regex) {
      try {
        Regex compiled(s.regex);
      } catch (const Error& e) {
        throw field_error(field, e.message());
      }
    }
    if (s.kind == ModuleSelector::Kind::names) {
      for (const auto& n : s.names) {
        if (n.empty()) throw field_error(field, "contains an empty module name");
      }
    }
  };
  check_selector(target_modules_, "target_modules");
  if (exclude_modules_.kind == ModuleSelector::Kind::all_linear) {
    throw field_error("exclude_modules", "\"all-linear\" is only meaningful for target_modules");
  }
  check_selector(exclude_modules_, "exclude_modules");
  if (layers_to_transform_) {
    for (int64_t i : *layers_to_transform_) {
      if (i < 0) throw field_error("layers_to_transform", "layer indices must be >= 0, got " + std::to_string(i));
    }
  }
  if (layers_pattern_ && !layers_pattern_->empty() && !layers_to_transform_) {
    throw field_error("layers_pattern", "is set but layers_to_transform is not; set both (as PEFT requires)");
  }
  if (target_modules_.kind == ModuleSelector::Kind::regex && (layers_to_transform_ || layers_pattern_)) {
    throw field_error(layers_to_transform_ ? "layers_to_transform" : "layers_pattern",
                      "cannot be used when target_modules is a regex string (as in PEFT)");
  }
  if (layers_pattern_) {
    for (const auto& p : *layers_pattern_) {
      try {
        Regex compiled(p);
      } catch (const Error& e) {
        throw field_error("layers_pattern", e.message());
      }
    }
  }
  for (const auto& [key, rank] : rank_pattern_) {
    if (rank <= 0) throw field_error("rank_pattern", "rank for '" + key + "' must be positive, got " + std::to_string(rank));
    try {
      Regex compiled(key);
    } catch (const Error& e) {
      throw field_error("rank_pattern", e.message());
    }
  }
  for (const auto& [key, alpha] : alpha_pattern_) {
    if (!(alpha > 0) || !std::isfinite(alpha)) {
      throw field_error("alpha_pattern", "alpha for '" + key + "' must be positive, got " + number_text(alpha));
    }
    try {
      Regex compiled(key);
    } catch (const Error& e) {
      throw field_error("alpha_pattern", e.message());
    }
  }
  if (modules_to_save_) {
    for (const auto& m : *modules_to_save_) {
      if (m.empty()) throw field_error("modules_to_save", "contains an empty module name");
    }
  }
  if (task_type_) {
    static const std::set<std::string> known = {"SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS",
                                                "QUESTION_ANS", "FEATURE_EXTRACTION"};
    if (known.count(*task_type_) == 0) {
      throw field_error("task_type", "unknown task type '" + *task_type_ +
                                         "'; allowed: CAUSAL_LM, SEQ_CLS, SEQ_2_SEQ_LM, TOKEN_CLS, "
                                         "QUESTION_ANS, FEATURE_EXTRACTION");
    }
  }
}

// ---- JSON --------------------------------------------------------------------------------------

std::string LoraConfig::to_json() const {
  json j;  // std::map-backed: keys come out sorted, as PEFT's json.dumps(sort_keys=True)
  json alpha = json::object();
  for (const auto& [k, v] : alpha_pattern_) alpha[k] = number_json(v);
  json rank = json::object();
  for (const auto& [k, v] : rank_pattern_) rank[k] = v;
  j["alpha_pattern"] = alpha;
  j["base_model_name_or_path"] = base_model_name_or_path_ ? json(*base_model_name_or_path_) : json(nullptr);
  j["bias"] = to_string(bias_);
  j["fan_in_fan_out"] = fan_in_fan_out_;
  j["inference_mode"] = inference_mode_;
  switch (init_lora_weights_.kind) {
    case LoraInit::Kind::lora: j["init_lora_weights"] = true; break;
    case LoraInit::Kind::off: j["init_lora_weights"] = false; break;
    default: j["init_lora_weights"] = init_lora_weights_.to_string();
  }
  j["layers_pattern"] = layers_pattern_ ? json(*layers_pattern_) : json(nullptr);
  j["layers_to_transform"] = layers_to_transform_ ? json(*layers_to_transform_) : json(nullptr);
  j["lora_alpha"] = number_json(lora_alpha_);
  j["lora_dropout"] = lora_dropout_;
  j["modules_to_save"] = modules_to_save_ ? json(*modules_to_save_) : json(nullptr);
  j["peft_type"] = "LORA";
  j["r"] = r_;
  j["rank_pattern"] = rank;
  j["revision"] = revision_ ? json(*revision_) : json(nullptr);
  j["target_modules"] = selector_json(target_modules_);
  j["task_type"] = task_type_ ? json(*task_type_) : json(nullptr);
  j["use_dora"] = use_dora_;
  j["use_rslora"] = use_rslora_;
  // exclude_modules arrived after PEFT 0.12, which rejects unknown fields: written only when set.
  if (!exclude_modules_.empty()) j["exclude_modules"] = selector_json(exclude_modules_);
  for (const auto& [k, v] : passthrough_defaults()) j[k] = json::parse(v);
  for (const auto& [k, v] : passthrough_) j[k] = json::parse(v);
  return j.dump(2);
}

LoraConfig LoraConfig::from_json(const std::string& text, const std::string& source) {
  const ordered_json root = io::parse_json(text, source);
  io::JsonFields f(root, source);
  LoraConfig c;
  try {
    if (f.has_value("peft_type")) {
      const std::string type = f.get_string("peft_type");
      if (type != "LORA") f.fail("peft_type", "is '" + type + "'; ranktune reads LoRA adapters (\"LORA\") only");
    }
    if (f.has("r")) c.r_ = f.get_int("r");
    if (f.has("lora_alpha")) c.lora_alpha_ = f.get_number("lora_alpha");
    if (f.has("lora_dropout")) c.lora_dropout_ = f.get_number("lora_dropout");
    c.target_modules_ = selector_from(f, "target_modules");
    c.exclude_modules_ = selector_from(f, "exclude_modules");
    if (f.has("bias")) {
      const std::string b = f.get_string("bias");
      if (b == "none") c.bias_ = LoraBias::none;
      else if (b == "all") c.bias_ = LoraBias::all;
      else if (b == "lora_only") c.bias_ = LoraBias::lora_only;
      else f.fail("bias", "unknown value '" + b + "'; allowed: none, all, lora_only");
    }
    if (f.has("use_rslora")) c.use_rslora_ = f.get_bool("use_rslora");
    if (f.has("use_dora")) c.use_dora_ = f.get_bool("use_dora");
    if (f.has("fan_in_fan_out")) c.fan_in_fan_out_ = f.get_bool("fan_in_fan_out");
    if (f.has("inference_mode")) c.inference_mode_ = f.get_bool("inference_mode");
    if (f.has("init_lora_weights")) {
      const auto& v = f.raw("init_lora_weights");
      if (v.is_boolean()) c.init_lora_weights_.kind = v.get<bool>() ? LoraInit::Kind::lora : LoraInit::Kind::off;
      else if (v.is_string()) c.init_lora_weights_ = LoraInit::parse(v.get<std::string>());
      else f.fail("init_lora_weights", "expected true, false or a method name, got " + io::json_type_name(v));
    }
    if (f.has_value("layers_to_transform")) c.layers_to_transform_ = f.get_int_list("layers_to_transform");
    if (f.has_value("layers_pattern")) c.layers_pattern_ = f.get_string_list("layers_pattern");
    if (f.has_value("modules_to_save")) c.modules_to_save_ = f.get_string_list("modules_to_save");
    // {module key: value} objects, in file order (the first matching key wins).
    auto read_pattern = [&](const char* key, auto get, auto& out) {
      if (!f.has_value(key)) return;
      const auto& v = f.raw(key);
      if (!v.is_object()) f.fail(key, "expected an object of module name -> value");
      io::JsonFields inner(v, source);
      for (const auto& item : v.items()) out.emplace_back(item.key(), (inner.*get)(item.key()));
    };
    read_pattern("rank_pattern", &io::JsonFields::get_int, c.rank_pattern_);
    read_pattern("alpha_pattern", &io::JsonFields::get_number, c.alpha_pattern_);
    auto optional_string = [&f](const char* key) -> std::optional<std::string> {
      if (f.has_value(key)) return f.get_string(key);
      return std::nullopt;
    };
    c.task_type_ = optional_string("task_type");
    c.base_model_name_or_path_ = optional_string("base_model_name_or_path");
    c.revision_ = optional_string("revision");
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

LoraConfig LoraConfig::load(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path)) file = (std::filesystem::path(path) / "adapter_config.json").string();
  return from_json(io::read_file(file), file);
}

void LoraConfig::save(const std::string& dir) const {
  validate();
  std::filesystem::create_directories(dir);
  io::write_file_atomic((std::filesystem::path(dir) / "adapter_config.json").string(), to_json());
}

}  // namespace ranktune::peft
