// model/generation with a TokenInjector: what a tool inserts never ends the row as end-of-sequence
// (a Qwen tool turn holds <|im_end|>), while the model's own choice of that id does.

#include "ranktune/model/causal_lm.h"
#include "ranktune/model/config.h"
#include "ranktune/model/generation.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <string>
#include <vector>

using namespace ranktune;

namespace {

TEST(GenerationToolsTest, InsertedEndOfSequenceIdsDoNotEndTheRow) {
  const std::string dir = std::string(RANKTUNE_SOURCE_DIR) + "/examples/gsm8k/quickstart/model";
  torch::manual_seed(5);
  auto lm = model::create_causal_lm(model::ModelConfig::load(dir));
  const std::vector<std::vector<int64_t>> prompt = {{1, 40, 41, 42}};
  const auto plain = model::generate(*lm, prompt, model::GenerationOptions().max_new_tokens(6));
  // An id the model does not choose greedily in these 6 tokens serves as the end-of-sequence id.
  int64_t eos = 3;
  while (std::find(plain[0].tokens.begin(), plain[0].tokens.end(), eos) != plain[0].tokens.end()) ++eos;
  auto options = model::GenerationOptions().max_new_tokens(6).eos_token_ids({eos});
  options.inject([eos](const std::vector<int64_t>& generated) {
    return generated.size() == 1 ? std::vector<int64_t>{eos, 7} : std::vector<int64_t>{};
  });
  const auto with_tool = model::generate(*lm, prompt, options);
  ASSERT_EQ(with_tool[0].tokens.size(), 6u);
  EXPECT_EQ(with_tool[0].tokens[0], plain[0].tokens[0]);
  EXPECT_EQ(with_tool[0].tokens[1], eos);
  EXPECT_EQ(with_tool[0].tokens[2], 7);
  EXPECT_EQ(with_tool[0].finish_reason, "length");
}

}  // namespace
