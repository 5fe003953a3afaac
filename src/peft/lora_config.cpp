#include "ranktune/peft/lora_config.h"

#include "ranktune/core/error.h"
#include "ranktune/core/regex.h"
#include "ranktune/io/file.h"
#include "ranktune/io/json.h"

#include <cmath>
#include <filesystem>

namespace ranktune::peft {
namespace {

using json = nlohmann::json;

Error field_error(const std::string& field, const std::string& message) {
  return Error(message, ErrorContext{"", field, -1});
}

// Python's repr-like spelling of a number for messages: 8 rather than 8.000000.
std::string number_text(double v) { return json(v).dump(); }

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

// ---- files (the JSON codec is generated from the field table: lora_config_fields.cpp) ----------

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
