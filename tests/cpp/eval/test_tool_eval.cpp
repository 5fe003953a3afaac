// Tools in the eval layer's generation: a model whose greedy decoding writes a calculator call
// gets the result inserted by evaluate_gsm8k (eval.calculator) and by rejection_sample
// (sample.calculator), and the inserted text is what the old calculator injector inserted.

#include "ranktune/eval/gsm8k_eval.h"
#include "ranktune/eval/rejection_sampling.h"
#include "ranktune/io/file.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/config.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

using namespace ranktune;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

namespace {

namespace fs = std::filesystem;

const std::string kModelDir = std::string(RANKTUNE_SOURCE_DIR) + "/examples/gsm8k/quickstart/model";

// A one-layer Llama whose greedy choice after chain[i] is chain[i + 1]: attention and MLP outputs
// are zero, so the last hidden state is the token's embedding, and the untied head maps each
// embedding in the chain to the next token's row.
std::shared_ptr<model::CausalLMImpl> successor_model(const std::vector<int64_t>& chain) {
  model::ModelConfig config = model::ModelConfig::load(kModelDir);
  config.tie_word_embeddings = false;
  config.num_hidden_layers = 1;
  torch::manual_seed(0);
  auto lm = model::create_causal_lm(config);
  torch::NoGradGuard no_grad;
  for (auto& p : lm->named_parameters()) {
    if (p.key().find("o_proj") != std::string::npos || p.key().find("down_proj") != std::string::npos) p.value().zero_();
  }
  auto params = lm->named_parameters();
  torch::Tensor embed = params["model.embed_tokens.weight"];
  const torch::Tensor directions = torch::randn(embed.sizes());
  embed.copy_(directions / directions.norm(2, {1}, /*keepdim=*/true));
  torch::Tensor head = params["lm_head.weight"];
  head.zero_();
  for (size_t i = 0; i + 1 < chain.size(); ++i) head[chain[i + 1]] += 10.0 * embed[chain[i]];
  return lm;
}

TEST(ToolEvalTest, EvaluationAndSamplingInsertTheCalculatorsResult) {
  const auto tok = tokenizer::Tokenizer::from_pretrained(kModelDir);
  const auto tmpl = prompt::PromptTemplate::load("gsm8k-cot");
  data::Example question;
  question.question = "What is 2 + 3?";
  question.answer = "5";
  const std::vector<int64_t> prompt = tok.encode(tmpl.render_prompt(question.question), true);
  std::vector<int64_t> chain = {prompt.back()};
  for (int64_t id : tok.encode(" <<2+3=")) chain.push_back(id);
  auto lm = successor_model(chain);

  const fs::path dir = fs::temp_directory_path() / "ranktune_tool_eval";
  fs::create_directories(dir);
  eval::EvalOptions o;
  // The call, then exactly the inserted "5>>" (the injector encodes it alone, as here).
  o.max_new_tokens = static_cast<int64_t>(chain.size() - 1 + tok.encode("5>>").size());
  o.progress = false;
  const auto generated = [&](bool calculator) {
    o.calculator = calculator;
    eval::evaluate_gsm8k(*lm, tok, tmpl, {question}, o, (dir / "predictions.jsonl").string());
    return nlohmann::json::parse(io::read_file((dir / "predictions.jsonl").string())).at("generated").get<std::string>();
  };
  EXPECT_THAT(generated(true), StartsWith(" <<2+3=5>>"));
  EXPECT_THAT(generated(false), Not(HasSubstr("=5>>")));

  eval::SampleOptions s;
  s.num_samples = 2;
  s.temperature = 0;  // greedy: both samples follow the chain
  s.max_new_tokens = o.max_new_tokens;
  s.calculator = true;
  s.keep = eval::SampleKeep::all_correct;
  s.answer = prompt::AnswerMode::flexible;  // the last number: the inserted 5
  s.progress = false;
  const auto summary = eval::rejection_sample(*lm, tok, tmpl, {question}, s, (dir / "samples.jsonl").string());
  EXPECT_EQ(summary.correct, 2);
  EXPECT_EQ(summary.kept, 1);  // the two samples are the same text
  const auto record = nlohmann::json::parse(io::read_file((dir / "samples.jsonl").string()));
  EXPECT_THAT(record.at("completion").get<std::string>(), StartsWith(" <<2+3=5>>"));
  fs::remove_all(dir);
}

}  // namespace
