#pragma once
// config.json readers shared by config.cpp and config_moe.cpp (the mixture-of-experts and MLA
// fields). Each error names the file and the key.

#include "ranktune/io/json.h"
#include "ranktune/model/config.h"

#include <cstdint>
#include <string>

namespace ranktune::model {

// A positive integer within ranktune's size limit for `key`.
int64_t positive(io::JsonFields& f, const std::string& key);
// As positive(), and an error when absent.
int64_t required_positive(io::JsonFields& f, const std::string& key);

// The mixture-of-experts fields of Mixtral, Qwen2-MoE and DeepSeek-V2/V3 into c.moe (nothing for
// other families). c's dense fields must be parsed already.
void parse_moe(io::JsonFields& f, ModelConfig& c);
// DeepSeek's multi-head latent attention fields into c.mla.
void parse_mla(io::JsonFields& f, ModelConfig& c);

}  // namespace ranktune::model
