#pragma once
// The eval tests' common setup: the quickstart's tiny model (random, seed 3), its tokenizer, the
// gsm8k-cot template and three questions "What is i + 1?" with their answers.

#include "ranktune/data/examples.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/config.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"

#include <memory>
#include <string>
#include <vector>

namespace ranktune::testing {

struct QuickstartQuestions {
  std::shared_ptr<model::CausalLMImpl> model;
  tokenizer::Tokenizer tokenizer;
  prompt::PromptTemplate prompt_template;
  std::vector<data::Example> questions;
};

inline QuickstartQuestions quickstart_questions() {
  const std::string dir = std::string(RANKTUNE_SOURCE_DIR) + "/examples/gsm8k/quickstart/model";
  torch::manual_seed(3);
  auto lm = model::create_causal_lm(model::ModelConfig::load(dir));
  std::vector<data::Example> questions(3);
  for (size_t i = 0; i < questions.size(); ++i) {
    questions[i].question = "What is " + std::to_string(i) + " + 1?";
    questions[i].answer = std::to_string(i + 1);
  }
  return {lm, tokenizer::Tokenizer::from_pretrained(dir), prompt::PromptTemplate::load("gsm8k-cot"), std::move(questions)};
}

}  // namespace ranktune::testing
