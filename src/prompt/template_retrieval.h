#pragma once
// What a template retrieves per question (its `exemplars` and `context` keys): the corpus, its BM25
// index (cached, retriever.h) and how many items each prompt gets. Read by PromptTemplate::parse.

#include "ranktune/io/yaml.h"
#include "ranktune/prompt/retriever.h"
#include "ranktune/prompt/template.h"

#include <memory>
#include <string>
#include <vector>

namespace ranktune::prompt {

// `exemplars: {corpus, k, retriever, strip_calculator}`: GSM8K-format records (question, answer
// ending "#### N"); a question's exemplars are the k records whose questions are nearest to it.
class RetrievedExemplars {
 public:
  RetrievedExemplars(Bm25Index index, std::vector<FewShotExample> records, int64_t k)
      : index_(std::move(index)), records_(std::move(records)), k_(k) {}
  std::vector<FewShotExample> for_question(const std::string& question) const;
  int64_t k() const { return k_; }
  const Bm25Index& index() const { return index_; }

 private:
  Bm25Index index_;
  std::vector<FewShotExample> records_;
  int64_t k_;
};

// `context: {corpus, k, retriever, field, separator}`: documents (JSONL records' `field`, or a text
// file's blank-line-separated paragraphs); a question's context is its k nearest documents, best
// first, joined by `separator`.
class RetrievedContext {
 public:
  RetrievedContext(Bm25Index index, int64_t k, std::string separator)
      : index_(std::move(index)), k_(k), separator_(std::move(separator)) {}
  std::string for_question(const std::string& question) const;
  const Bm25Index& index() const { return index_; }

 private:
  Bm25Index index_;
  int64_t k_;
  std::string separator_;
};

// Read the template's `exemplars` / `context` mapping (`fields` is that mapping). A relative corpus
// path is relative to `base_dir` (the template file's directory). Errors name the key.
std::shared_ptr<const RetrievedExemplars> load_retrieved_exemplars(io::YamlFields fields, const std::string& base_dir);
std::shared_ptr<const RetrievedContext> load_retrieved_context(io::YamlFields fields, const std::string& base_dir);

}  // namespace ranktune::prompt
