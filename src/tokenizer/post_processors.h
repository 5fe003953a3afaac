#pragma once
// tokenizer.json post-processors: what add_special_tokens=true adds around one sequence.
// Supported types: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel (no ids),
// Sequence.

#include "ranktune/io/json.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace ranktune::tokenizer {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Adds the special tokens of a single sequence.
  virtual void process(std::vector<int64_t>& ids) const = 0;
};

// Builds the post-processor described by `spec` (nullptr for JSON null).
std::unique_ptr<PostProcessor> make_post_processor(const io::json& spec, const io::JsonPath& at);

// Wraps a sequence in fixed prefix and suffix ids (also used for tokenizer_config.json's
// add_bos_token/add_eos_token).
class AffixProcessor : public PostProcessor {
 public:
  AffixProcessor(std::vector<int64_t> prefix, std::vector<int64_t> suffix)
      : prefix_(std::move(prefix)), suffix_(std::move(suffix)) {}
  void process(std::vector<int64_t>& ids) const override;

 private:
  std::vector<int64_t> prefix_, suffix_;
};

}  // namespace ranktune::tokenizer
