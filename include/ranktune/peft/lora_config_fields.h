#pragma once
// LoraConfig's schema: one row per field, in PEFT's order. Everything that handles a field by name
// comes from this table, so a field is described once:
//   - LoraConfig::to_json / from_json (adapter_config.json),
//   - the recipe keys adapter.<name> (src/train/config.cpp) and their rows in docs/config.md,
//   - the Python dataclass ranktune.LoraConfig: its defaults and help (_core.lora_config_fields()).
// A field's C++ type and default are its TORCH_ARG in lora_config.h; the table reads the default
// from a default-constructed LoraConfig instead of restating it.
//
//   for (const auto& f : ranktune::peft::lora_config_fields()) std::cout << f.name << " = " << f.default_json();

#include "ranktune/peft/lora_config.h"

#include <string>
#include <vector>

namespace ranktune::peft {

struct LoraConfigField {
  // The value's form in JSON (and in YAML recipes).
  enum class Kind {
    integer,
    number,
    boolean,
    string,         // null when unset; `choices` lists the allowed values when they are fixed
    strings,        // null, a list of strings, or one string
    integers,       // null, a list of integers, or one integer
    selector,       // null, a list of module names, a regex string, or "all-linear"
    init,           // true, false or a method name ("gaussian", "pissa", ...)
    rank_pattern,   // {module key: integer}
    alpha_pattern,  // {module key: number}
  };
  // PEFT 0.12 refuses fields it does not know, so the fields of later PEFT versions are written
  // only when they differ from the default (a file PEFT 0.12 can read stays one).
  enum class Written { always, when_set };

  std::string name;  // the C++ accessor, the JSON key (PEFT's field) and the recipe key adapter.<name>
  Kind kind;
  Written written;
  std::string help;  // one line
  std::vector<std::string> choices;
  // Empty: recipes set the field as adapter.<name>. Otherwise why they do not ("set by the
  // trainer: CAUSAL_LM").
  std::string outside_recipes;

  bool is_recipe_key() const { return outside_recipes.empty(); }
  // The field's value in `config` as JSON text, as adapter_config.json holds it.
  std::string value_json(const LoraConfig& config) const;
  // value_json(LoraConfig()).
  std::string default_json() const;
  // Sets the field from JSON text, checked as LoraConfig::from_json checks it: throws
  // ranktune::Error with the field as the key when the value has the wrong form.
  void set_from_json(LoraConfig& config, const std::string& json_text) const;
};

const std::vector<LoraConfigField>& lora_config_fields();
// The row named `name`, or nullptr.
const LoraConfigField* find_lora_config_field(const std::string& name);

std::string to_string(LoraConfigField::Kind kind);       // "integer", "selector", ...
std::string to_string(LoraConfigField::Written written);  // "always", "when_set"

}  // namespace ranktune::peft
