#include "ranktune/model/config.h"

#include "config_fields.h"

#include "ranktune/core/error.h"
#include "ranktune/io/file.h"
#include "ranktune/io/hub_cache.h"
#include "ranktune/io/json.h"

#include <filesystem>
#include <limits>
#include <utility>

namespace ranktune::model {
namespace {

struct Family {
  const char* architecture;
  const char* model_type;
  int64_t default_max_positions;
};

const std::vector<Family>& families() {
  static const std::vector<Family> f = {{"LlamaForCausalLM", "llama", 2048},
                                        {"MistralForCausalLM", "mistral", 4096 * 32},
                                        {"Qwen2ForCausalLM", "qwen2", 32768},
                                        {"GPT2LMHeadModel", "gpt2", 1024},
                                        {"MixtralForCausalLM", "mixtral", 4096 * 32},
                                        {"Qwen2MoeForCausalLM", "qwen2_moe", 32768},
                                        {"DeepseekV2ForCausalLM", "deepseek_v2", 2048},
                                        {"DeepseekV3ForCausalLM", "deepseek_v3", 4096}};
  return f;
}

std::string supported_list() {
  std::string out;
  for (const auto& f : families()) out += (out.empty() ? "" : ", ") + std::string(f.architecture);
  return out;
}

// Upper bounds on the sizes, checked as they are read, before anything is allocated: far above
// any released model (vocabularies up to ~256k, 126 layers, contexts of 10M tokens), low enough
// that a typo or a hostile file (vocab_size: 2**40) fails here, naming the key, instead of in an
// allocation. Keyed by config.json's spelling (GPT-2 names its fields differently).
int64_t size_limit(const std::string& key) {
  static const std::vector<std::pair<std::string, int64_t>> limits = {
      {"vocab_size", int64_t{1} << 24},          {"hidden_size", int64_t{1} << 18},
      {"n_embd", int64_t{1} << 18},              {"intermediate_size", int64_t{1} << 20},
      {"n_inner", int64_t{1} << 20},             {"num_hidden_layers", int64_t{1} << 12},
      {"n_layer", int64_t{1} << 12},             {"num_attention_heads", int64_t{1} << 14},
      {"n_head", int64_t{1} << 14},              {"num_key_value_heads", int64_t{1} << 14},
      {"head_dim", int64_t{1} << 14},            {"max_position_embeddings", int64_t{1} << 26},
      {"n_positions", int64_t{1} << 26},         {"num_local_experts", int64_t{1} << 16},
      {"num_experts", int64_t{1} << 16},         {"n_routed_experts", int64_t{1} << 16},
      {"moe_intermediate_size", int64_t{1} << 20}, {"shared_expert_intermediate_size", int64_t{1} << 20},
      {"kv_lora_rank", int64_t{1} << 16},        {"q_lora_rank", int64_t{1} << 16},
      {"qk_nope_head_dim", int64_t{1} << 14},    {"qk_rope_head_dim", int64_t{1} << 14},
      {"v_head_dim", int64_t{1} << 14}};
  for (const auto& [name, limit] : limits) {
    if (name == key) return limit;
  }
  return std::numeric_limits<int64_t>::max();
}

}  // namespace

int64_t positive(io::JsonFields& f, const std::string& key) {
  const int64_t v = f.get_int(key);
  if (v <= 0) f.fail(key, "must be a positive integer, got " + std::to_string(v));
  const int64_t limit = size_limit(key);
  if (v > limit) {
    f.fail(key, "is " + std::to_string(v) + ", more than ranktune's limit of " + std::to_string(limit) +
                    " (larger than any real model: is the value a typo?)");
  }
  return v;
}

int64_t required_positive(io::JsonFields& f, const std::string& key) {
  if (!f.has_value(key)) f.fail(key, "is missing");
  return positive(f, key);
}

namespace {

RopeScaling parse_rope_scaling(io::JsonFields& f) {
  RopeScaling s;
  if (!f.has_value("rope_scaling")) return s;
  io::JsonFields r(f.raw("rope_scaling"), f.source());
  std::string type;
  if (r.has_value("rope_type")) type = r.get_string("rope_type");
  else if (r.has_value("type")) type = r.get_string("type");
  if (type == "default" || type.empty()) return s;
  if (type == "linear") s.type = RopeScaling::Type::linear;
  else if (type == "dynamic") s.type = RopeScaling::Type::dynamic;
  else if (type == "llama3") s.type = RopeScaling::Type::llama3;
  else if (type == "yarn") s.type = RopeScaling::Type::yarn;
  else f.fail("rope_scaling", "type '" + type + "' is not supported; supported: linear, dynamic, llama3, yarn");
  if (!r.has_value("factor")) f.fail("rope_scaling", "needs a 'factor'");
  s.factor = r.get_number("factor");
  if (!(s.factor >= 1.0)) f.fail("rope_scaling", "factor must be >= 1");
  if (s.type == RopeScaling::Type::llama3) {
    if (r.has_value("low_freq_factor")) s.low_freq_factor = r.get_number("low_freq_factor");
    if (r.has_value("high_freq_factor")) s.high_freq_factor = r.get_number("high_freq_factor");
    if (r.has_value("original_max_position_embeddings")) {
      s.original_max_position_embeddings = r.get_int("original_max_position_embeddings");
    }
    if (!(s.high_freq_factor > s.low_freq_factor)) f.fail("rope_scaling", "needs high_freq_factor > low_freq_factor");
  }
  if (s.type == RopeScaling::Type::yarn) {  // DeepSeek's defaults
    s.original_max_position_embeddings =
        r.has_value("original_max_position_embeddings") ? r.get_int("original_max_position_embeddings") : 4096;
    if (r.has_value("beta_fast")) s.beta_fast = r.get_number("beta_fast");
    if (r.has_value("beta_slow")) s.beta_slow = r.get_number("beta_slow");
    if (r.has_value("mscale")) s.mscale = r.get_number("mscale");
    if (r.has_value("mscale_all_dim")) s.mscale_all_dim = r.get_number("mscale_all_dim");
    if (!(s.original_max_position_embeddings > 0 && s.beta_fast > 0 && s.beta_slow > 0)) {
      f.fail("rope_scaling", "yarn needs positive original_max_position_embeddings, beta_fast and beta_slow");
    }
  }
  return s;
}

std::optional<int64_t> optional_int(io::JsonFields& f, const std::string& key) {
  if (!f.has_value(key)) return std::nullopt;
  return f.get_int(key);
}

}  // namespace

const std::vector<std::string>& ModelConfig::supported_architectures() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& f : families()) n.emplace_back(f.architecture);
    return n;
  }();
  return names;
}

ModelConfig ModelConfig::from_json(const std::string& text, const std::string& source) {
  const io::ordered_json root = io::parse_json(text, source);
  io::JsonFields f(root, source);
  ModelConfig c;
  std::string model_type = f.has_value("model_type") ? f.get_string("model_type") : "";
  std::string architecture;
  if (f.has_value("architectures")) {
    const auto list = f.get_string_list("architectures");
    if (!list.empty()) architecture = list[0];
  }
  const Family* family = nullptr;
  for (const auto& fam : families()) {
    if ((!architecture.empty() && architecture == fam.architecture) || (architecture.empty() && model_type == fam.model_type)) {
      family = &fam;
    }
  }
  if (family == nullptr) {
    const std::string what = !architecture.empty() ? "architecture '" + architecture + "'"
                             : !model_type.empty() ? "model_type '" + model_type + "'"
                                                   : std::string("a config without 'architectures' or 'model_type'");
    throw Error(what + " is not supported; supported architectures: " + supported_list(),
                ErrorContext{source, architecture.empty() ? "model_type" : "architectures", -1});
  }
  c.architecture = family->architecture;
  c.model_type = family->model_type;
  if (!model_type.empty() && model_type != c.model_type) {
    f.fail("model_type", "is '" + model_type + "' but the architecture " + c.architecture + " needs '" + c.model_type + "'");
  }
  if (f.has_value("torch_dtype")) c.torch_dtype = f.get_string("torch_dtype");

  if (c.is_gpt2()) {
    c.hidden_size = required_positive(f, "n_embd");
    c.num_attention_heads = required_positive(f, "n_head");
    c.num_hidden_layers = required_positive(f, "n_layer");
    c.vocab_size = required_positive(f, "vocab_size");
    c.max_position_embeddings = f.has_value("n_positions") ? positive(f, "n_positions") : 1024;
    c.intermediate_size = f.has_value("n_inner") ? positive(f, "n_inner") : 4 * c.hidden_size;
    c.num_key_value_heads = c.num_attention_heads;
    c.norm_eps = f.has_value("layer_norm_epsilon") ? f.get_number("layer_norm_epsilon") : 1e-5;
    c.hidden_act = f.has_value("activation_function") ? f.get_string("activation_function") : "gelu_new";
    c.tie_word_embeddings = f.has_value("tie_word_embeddings") ? f.get_bool("tie_word_embeddings") : true;
    c.attention_bias = c.attention_output_bias = c.mlp_bias = true;
    if (f.has_value("scale_attn_by_inverse_layer_idx") && f.get_bool("scale_attn_by_inverse_layer_idx")) {
      f.fail("scale_attn_by_inverse_layer_idx", "true is not supported");
    }
    if (f.has_value("reorder_and_upcast_attn") && f.get_bool("reorder_and_upcast_attn")) {
      f.fail("reorder_and_upcast_attn", "true is not supported");
    }
  } else {
    c.hidden_size = required_positive(f, "hidden_size");
    c.num_attention_heads = required_positive(f, "num_attention_heads");
    c.num_hidden_layers = required_positive(f, "num_hidden_layers");
    c.vocab_size = required_positive(f, "vocab_size");
    c.intermediate_size = required_positive(f, "intermediate_size");
    c.num_key_value_heads = f.has_value("num_key_value_heads") ? positive(f, "num_key_value_heads") : c.num_attention_heads;
    c.max_position_embeddings =
        f.has_value("max_position_embeddings") ? positive(f, "max_position_embeddings") : family->default_max_positions;
    if (f.has_value("rms_norm_eps")) c.norm_eps = f.get_number("rms_norm_eps");
    if (f.has_value("rope_theta")) c.rope_theta = f.get_number("rope_theta");
    c.rope_scaling = parse_rope_scaling(f);
    c.hidden_act = f.has_value("hidden_act") ? f.get_string("hidden_act") : "silu";
    c.tie_word_embeddings = f.has_value("tie_word_embeddings") && f.get_bool("tie_word_embeddings");
    if (c.model_type == "qwen2") {
      c.attention_bias = true;  // Qwen2: q/k/v have biases, o_proj does not
      if (f.has_value("use_sliding_window") && f.get_bool("use_sliding_window")) {
        f.fail("use_sliding_window", "true is not supported for Qwen2 (per-layer windows)");
      }
    } else if (c.model_type == "llama") {
      c.attention_bias = c.attention_output_bias = f.has_value("attention_bias") && f.get_bool("attention_bias");
      c.mlp_bias = f.has_value("mlp_bias") && f.get_bool("mlp_bias");
    } else if (c.model_type == "mistral" || c.model_type == "mixtral") {
      c.sliding_window = optional_int(f, "sliding_window");
    } else if (c.model_type == "qwen2_moe") {
      c.attention_bias = true;  // as Qwen2
      if (f.has_value("use_sliding_window") && f.get_bool("use_sliding_window")) {
        f.fail("use_sliding_window", "true is not supported for Qwen2-MoE (per-layer windows)");
      }
    } else if (c.is_deepseek()) {
      // q_a_proj, kv_a_proj_with_mqa and o_proj (DeepSeek's attention_bias)
      c.attention_bias = c.attention_output_bias = f.has_value("attention_bias") && f.get_bool("attention_bias");
    }
    parse_moe(f, c);
    if (c.is_deepseek()) parse_mla(f, c);
    if (c.rope_scaling.type == RopeScaling::Type::yarn && !c.is_deepseek()) {
      f.fail("rope_scaling", "type 'yarn' is supported for DeepSeek-V2/V3 only");
    }
    if (c.is_deepseek() && c.rope_scaling.type == RopeScaling::Type::dynamic) {
      f.fail("rope_scaling", "type 'dynamic' is not supported for DeepSeek (supported: linear, yarn)");
    }
  }
  c.head_dim = f.has_value("head_dim") ? positive(f, "head_dim") : c.hidden_size / c.num_attention_heads;
  if (!f.has_value("head_dim") && c.hidden_size % c.num_attention_heads != 0) {
    f.fail("num_attention_heads", "must divide hidden_size (" + std::to_string(c.hidden_size) + ")");
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    f.fail("num_key_value_heads", "must divide num_attention_heads (" + std::to_string(c.num_attention_heads) + ")");
  }
  if (c.hidden_act != "silu" && c.hidden_act != "gelu_new" && c.hidden_act != "gelu" && c.hidden_act != "gelu_pytorch_tanh") {
    f.fail(c.is_gpt2() ? "activation_function" : "hidden_act",
           "'" + c.hidden_act + "' is not supported; supported: silu, gelu, gelu_new, gelu_pytorch_tanh");
  }
  if (!(c.norm_eps > 0)) f.fail(c.is_gpt2() ? "layer_norm_epsilon" : "rms_norm_eps", "must be positive");
  c.bos_token_id = optional_int(f, "bos_token_id");
  c.pad_token_id = optional_int(f, "pad_token_id");
  if (f.has_value("eos_token_id")) c.eos_token_ids = f.get_int_list("eos_token_id");
  return c;
}

ModelConfig ModelConfig::load(const std::string& name_or_path) {
  const std::string path = io::resolve_pretrained(name_or_path);
  std::string file = path;
  if (std::filesystem::is_directory(path)) file = (std::filesystem::path(path) / "config.json").string();
  return from_json(io::read_file(file), file);
}

}  // namespace ranktune::model
