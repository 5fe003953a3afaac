#include "template_retrieval.h"

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/strings.h"
#include "ranktune/data/examples.h"
#include "ranktune/data/sft.h"
#include "ranktune/io/file.h"

#include <chrono>
#include <filesystem>

namespace ranktune::prompt {
namespace {

namespace fs = std::filesystem;

struct Source {
  std::string corpus;  // resolved path
  int64_t k = 0;
};

// The keys both mappings share: corpus (required, an existing file), k (> 0), retriever (bm25).
Source read_common(io::YamlFields& fields, const std::string& base_dir, int64_t default_k) {
  Source s;
  const std::string corpus = fields.get_string("corpus");
  if (corpus.empty()) fields.fail("corpus", "must name a corpus file");
  s.corpus = fs::path(corpus).is_absolute() || base_dir.empty() ? corpus
                                                                 : (fs::path(base_dir) / corpus).lexically_normal().string();
  std::error_code ec;
  if (!fs::is_regular_file(s.corpus, ec)) fields.fail("corpus", "no such file: " + s.corpus);
  s.k = fields.has_value("k") ? fields.get_int("k") : default_k;
  if (s.k <= 0) fields.fail("k", c10::str("must be a positive number of items to retrieve, got ", s.k));
  if (fields.has_value("retriever")) {
    const std::string retriever = fields.get_string("retriever");
    if (retriever != "bm25") fields.fail("retriever", "unknown retriever '" + retriever + "'; available: bm25");
  }
  return s;
}

// The index of `documents` from `corpus` (cached), with the time it took in the log.
Bm25Index index_corpus(std::vector<std::string> documents, const std::string& corpus, const std::string& field) {
  const auto start = std::chrono::steady_clock::now();
  Bm25Index index = Bm25Index::load_or_build(std::move(documents), bm25_cache_file(corpus, field));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  log_info(c10::str(corpus, ": BM25 index of ", index.size(), " documents ", to_string(index.source()), " in ", ms, " ms"));
  return index;
}

}  // namespace

std::vector<FewShotExample> RetrievedExemplars::for_question(const std::string& question) const {
  std::vector<FewShotExample> out;
  for (const ScoredDocument& hit : index_.search(question, k_)) out.push_back(records_[static_cast<size_t>(hit.index)]);
  return out;
}

std::string RetrievedContext::for_question(const std::string& question) const {
  std::vector<std::string> documents;
  for (const ScoredDocument& hit : index_.search(question, k_)) documents.push_back(index_.document(hit.index));
  return join(documents, separator_);
}

std::shared_ptr<const RetrievedExemplars> load_retrieved_exemplars(io::YamlFields fields, const std::string& base_dir) {
  fields.reject_unknown({"corpus", "k", "retriever", "strip_calculator"});
  const Source s = read_common(fields, base_dir, 8);
  const bool strip = fields.has_value("strip_calculator") && fields.get_bool("strip_calculator");
  std::vector<FewShotExample> records;
  std::vector<std::string> questions;
  try {
    for (auto& ex : data::load_gsm8k(s.corpus, strip)) {
      questions.push_back(ex.question);
      records.push_back({std::move(ex.question), std::move(ex.rationale), std::move(ex.answer)});
    }
  } catch (const Error& e) {
    fields.fail("corpus", e.what());
  }
  return std::make_shared<RetrievedExemplars>(index_corpus(std::move(questions), s.corpus, "question"),
                                              std::move(records), s.k);
}

std::shared_ptr<const RetrievedContext> load_retrieved_context(io::YamlFields fields, const std::string& base_dir) {
  fields.reject_unknown({"corpus", "k", "retriever", "field", "separator"});
  const Source s = read_common(fields, base_dir, 3);
  const std::string field = fields.has_value("field") ? fields.get_string("field") : "text";
  const std::string separator = fields.has_value("separator") ? fields.get_string("separator") : "\n\n";
  std::vector<std::string> documents;
  try {
    if (ends_with(s.corpus, ".jsonl")) {
      data::SftOptions o;
      o.format = data::SftFormat::text;
      o.text_field = field;
      for (auto& record : data::load_sft_jsonl(s.corpus, o)) documents.push_back(std::move(record.text));
    } else {  // text: paragraphs separated by blank lines
      const std::string text = io::read_file(s.corpus);
      std::string paragraph;
      size_t start = 0;
      while (start <= text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        const std::string line = text.substr(start, end - start);
        if (trim(line).empty()) {
          if (!trim(paragraph).empty()) documents.push_back(trim(paragraph));
          paragraph.clear();
        } else {
          paragraph += line + "\n";
        }
        start = end + 1;
      }
      if (!trim(paragraph).empty()) documents.push_back(trim(paragraph));
      if (documents.empty()) throw Error("no documents (paragraphs separated by blank lines)", ErrorContext{s.corpus, "", -1});
    }
  } catch (const Error& e) {
    fields.fail("corpus", e.what());
  }
  return std::make_shared<RetrievedContext>(index_corpus(std::move(documents), s.corpus, field), s.k, separator);
}

}  // namespace ranktune::prompt
