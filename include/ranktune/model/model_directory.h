#pragma once
// What makes saved weights a Hugging Face model directory besides model.safetensors: config.json
// (saying the dtype the weights were written in) and the files a tokenizer and generation need,
// carried over from the directory the model was loaded from. Used by `ranktune merge` and by full
// fine-tuning's output and checkpoints, so both load with `model.path` and transformers'
// from_pretrained.

#include <torch/types.h>

#include <string>
#include <vector>

namespace ranktune::model {

class CausalLMImpl;

// `model_dir`'s config.json for `model`'s weights written as `written`: torch_dtype becomes
// `written`, and tie_word_embeddings false when the model's tied ends were given separate weights
// (a modules_to_save copy merged into one end), or loading would tie them again.
std::string config_json_for_weights(const std::string& model_dir, CausalLMImpl& model, torch::Dtype written);

// Writes config.json (config_json_for_weights) into `out_dir` and copies from `model_dir` the
// generation config and tokenizer files it has (tokenizer.json, tokenizer_config.json,
// tokenizer.model, special_tokens_map.json, vocab.json, merges.txt, added_tokens.json),
// replacing files of those names already in `out_dir`.
void write_model_directory_files(const std::string& model_dir, const std::string& out_dir, CausalLMImpl& model,
                                 torch::Dtype written);

// The names write_model_directory_files may write: config.json and the copied files (a run
// directory's owner removes them with the weights when it replaces a run).
const std::vector<std::string>& model_directory_file_names();

}  // namespace ranktune::model
