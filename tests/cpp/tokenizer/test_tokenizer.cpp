// Tokenizer: Hugging Face's ids on real vocabularies (../shared/tokenizers, stories260K), the
// building blocks (BPE options, added-token flags, pre-tokenizers, NFC), and the errors.

#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/file.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "test_util.h"
#include "tokenizer/pattern.h"
#include "tokenizer/unicode_normalization.h"
#include "tokenizer/utf8.h"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

using ranktune::Error;
using ranktune::tokenizer::Tokenizer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;
using Ids = std::vector<int64_t>;

using ranktune::testing::error_of;
using ranktune::testing::sentencepiece_loadable;

namespace {

namespace fs = std::filesystem;

std::string shared_path(const std::string& relative) { return ranktune::testing::shared_dir() + "/" + relative; }

// A scratch directory, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "_" + info->name();
    for (char& c : name) c = c == '/' ? '_' : c;  // parameterized test names contain '/'
    path_ = (fs::temp_directory_path() / ("ranktune_tokenizer_" + std::to_string(::getpid()) + "_" + name)).string();
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }
  void write(const std::string& name, const std::string& text) const { std::ofstream(file(name), std::ios::binary) << text; }

 private:
  std::string path_;
};

// The UTF-8 characters of `text`.
std::vector<std::string> characters(const std::string& text) {
  std::vector<std::string> out;
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = ranktune::tokenizer::utf8_sequence_length(static_cast<unsigned char>(text[pos]));
    out.push_back(text.substr(pos, n));
    pos += n;
  }
  return out;
}

Ids concat(Ids a, const Ids& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// ---- synthetic tokenizer.json files -----------------------------------------------------------

// A BPE tokenizer.json: "<unk>" (id 0), then one token per character of `alphabet`, then
// `extra_tokens`; `merges` as given. Other parts null unless set by the caller.
json tiny_tokenizer(const std::string& alphabet, const std::vector<std::string>& extra_tokens = {},
                    const json& merges = json::array()) {
  json vocab = json::object();
  int64_t next = 0;
  vocab["<unk>"] = next++;
  for (const auto& c : characters(alphabet)) {
    if (!vocab.contains(c)) vocab[c] = next++;
  }
  for (const auto& t : extra_tokens) {
    if (!vocab.contains(t)) vocab[t] = next++;
  }
  return json{{"version", "1.0"},          {"truncation", nullptr},  {"padding", nullptr},
              {"added_tokens", json::array()}, {"normalizer", nullptr},  {"pre_tokenizer", nullptr},
              {"post_processor", nullptr}, {"decoder", nullptr},
              {"model", {{"type", "BPE"}, {"unk_token", "<unk>"}, {"vocab", vocab}, {"merges", merges}}}};
}

json added_token(int64_t id, const std::string& content, bool special, bool lstrip = false, bool rstrip = false,
                 bool single_word = false, bool normalized = false) {
  return json{{"id", id},         {"content", content},         {"single_word", single_word},
              {"lstrip", lstrip}, {"rstrip", rstrip},           {"normalized", normalized},
              {"special", special}};
}

Tokenizer load_json(const TempDir& dir, const json& tokenizer, const std::string& name = "tokenizer.json") {
  dir.write(name, tokenizer.dump());
  return Tokenizer::from_pretrained(dir.file(name));
}

// Ids of the single-character tokens of `text`.
Ids char_ids(const Tokenizer& tok, const std::string& text) {
  Ids out;
  for (const auto& c : characters(text)) {
    const auto id = tok.token_to_id(c);
    EXPECT_TRUE(id.has_value()) << "no token for '" << c << "'";
    out.push_back(id.value_or(-1));
  }
  return out;
}

// ---- conformance data ---------------------------------------------------------------------------

struct VectorCase {
  std::string text;
  Ids ids;
};

// vectors.inp (cases separated by "\n__ggml_vocab_test__\n", the last piece empty) and
// vectors.out (one line of ids per case).
std::vector<VectorCase> read_vectors(const std::string& dir) {
  const std::string inp = ranktune::io::read_file(dir + "/vectors.inp");
  const std::string out = ranktune::io::read_file(dir + "/vectors.out");
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0;;) {
    const size_t end = inp.find(separator, pos);
    if (end == std::string::npos) {
      texts.push_back(inp.substr(pos));
      break;
    }
    texts.push_back(inp.substr(pos, end - pos));
    pos = end + separator.size();
  }
  if (!texts.empty() && texts.back().empty()) texts.pop_back();
  std::vector<VectorCase> cases;
  std::istringstream lines(out);
  std::string line;
  for (const auto& text : texts) {
    std::getline(lines, line);
    Ids ids;
    std::istringstream numbers(line);
    for (int64_t id; numbers >> id;) ids.push_back(id);
    cases.push_back({text, ids});
  }
  return cases;
}

// Short GSM8K questions, optionally only those without repeated, leading or trailing whitespace.
std::vector<std::string> gsm8k_questions(size_t limit, bool clean_whitespace) {
  std::vector<std::string> out;
  std::istringstream lines(ranktune::io::read_file(shared_path("data/gsm8k/test.jsonl")));
  std::string line;
  while (out.size() < limit && std::getline(lines, line)) {
    const std::string q = json::parse(line).at("question").get<std::string>();
    const bool clean = q.find("  ") == std::string::npos && q.find_first_of("\n\t") == std::string::npos &&
                       q.front() != ' ' && q.back() != ' ';
    if (!clean_whitespace || clean) out.push_back(q);
  }
  return out;
}

const char* const kVocabularies[] = {"gpt-2", "llama-spm", "phi-3", "qwen2", "llama-bpe"};

}  // namespace

// ==== conformance on real vocabularies =========================================================

class TokenizerVectors : public ::testing::TestWithParam<const char*> {};

TEST_P(TokenizerVectors, AllCasesMatchHuggingFaceIds) {
  const std::string name = GetParam();
  RANKTUNE_REQUIRE_SHARED("tokenizers/" + name + "/vectors.out");
  const std::string dir = shared_path("tokenizers/" + name);
  const Tokenizer tok = Tokenizer::from_pretrained(dir);
  const auto cases = read_vectors(dir);
  ASSERT_EQ(cases.size(), 46u);
  int passed = 0;
  for (const auto& c : cases) {
    const Ids ids = tok.encode(c.text);
    EXPECT_EQ(ids, c.ids) << name << " text " << json(c.text).dump();
    passed += ids == c.ids;
  }
  EXPECT_EQ(passed, 46) << name;
}

TEST_P(TokenizerVectors, DecodeInvertsEncode) {
  // Exact for byte-level vocabularies; the SentencePiece-style ones here round-trip these
  // cases too (their Strip decoder removes exactly the prepended "▁").
  const std::string name = GetParam();
  RANKTUNE_REQUIRE_SHARED("tokenizers/" + name + "/vectors.inp");
  const std::string dir = shared_path("tokenizers/" + name);
  const Tokenizer tok = Tokenizer::from_pretrained(dir);
  for (const auto& c : read_vectors(dir)) {
    EXPECT_EQ(tok.decode(tok.encode(c.text)), c.text) << name << " text " << json(c.text).dump();
  }
}

INSTANTIATE_TEST_SUITE_P(SharedVocabularies, TokenizerVectors, ::testing::ValuesIn(kVocabularies),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) c = c == '-' ? '_' : c;
                           return s;
                         });

TEST(TokenizerTestVectors, EveryCaseWhoseVocabularyWeHaveMatches) {
  RANKTUNE_REQUIRE_SHARED("tokenizers/test_vectors.json");
  const std::map<std::string, std::string> location = {
      {"llama.cpp/gpt-2", "tokenizers/gpt-2"},         {"tiktoken/gpt2", "tokenizers/gpt-2"},
      {"llama.cpp/llama-spm", "tokenizers/llama-spm"}, {"llama.cpp/phi-3", "tokenizers/phi-3"},
      {"llama.cpp/qwen2", "tokenizers/qwen2"},         {"transformers/qwen2", "tokenizers/qwen2"},
      {"llama.cpp/llama-bpe", "tokenizers/llama-bpe"}, {"meta-llama/llama3", "tokenizers/llama-bpe"},
      {"stories260K/tok512", "models/stories260k/tokenizer.model"}};
  const json vectors = json::parse(ranktune::io::read_file(shared_path("tokenizers/test_vectors.json")));
  int checked = 0, sources = 0;
  for (const auto& [source, entry] : vectors.items()) {
    const auto it = location.find(source);
    if (it == location.end() || !fs::exists(shared_path(it->second))) continue;  // no vocabulary for it
    if (ranktune::ends_with(it->second, ".model") && !sentencepiece_loadable()) continue;
    ++sources;
    const Tokenizer tok = Tokenizer::from_pretrained(shared_path(it->second));
    for (const auto& c : entry.at("cases")) {
      const std::string text = c.at("text");
      ++checked;
      if (c.contains("ids_with_bos_from_model")) {
        // Generated by stories260K and decoded with tok512.model: SentencePiece adds BOS.
        const Ids expected = c.at("ids_with_bos_from_model");
        EXPECT_EQ(tok.encode(text, /*add_special_tokens=*/true), expected) << source;
        EXPECT_EQ(tok.decode(expected, /*skip_special_tokens=*/true), text) << source;
        continue;
      }
      // Hugging Face ids without special tokens; Meta's Llama 3 cases may add BOS/EOS.
      Ids ids = tok.encode(text);
      if (c.value("bos", false)) ids.insert(ids.begin(), tok.bos_token_id().value_or(-1));
      if (c.value("eos", false)) ids.push_back(tok.eos_token_id().value_or(-1));
      EXPECT_EQ(ids, c.at("ids").get<Ids>()) << source << " text " << json(text).dump().substr(0, 120);
      if (tok.kind() == "bpe-byte-level") EXPECT_EQ(tok.decode(tok.encode(text)), text) << source;
    }
  }
  // Without libsentencepiece: stories260K (one source, one case) is not checked.
  const bool all = sentencepiece_loadable();
  EXPECT_EQ(sources, all ? 9 : 8);
  EXPECT_EQ(checked, 5 * 46 + 18 + 3 + 7 + (all ? 1 : 0));
}

// ==== SentencePiece model files ===================================================================

TEST(TokenizerSentencePiece, ModelFileIsEncodedByLibsentencepiece) {
  RANKTUNE_REQUIRE_SENTENCEPIECE();
  RANKTUNE_REQUIRE_SHARED("models/stories260k/tokenizer.model");
  const Tokenizer tok = Tokenizer::from_pretrained(shared_path("models/stories260k/tokenizer.model"));
  EXPECT_EQ(tok.kind(), "sentencepiece-model");
  EXPECT_EQ(tok.source(), shared_path("models/stories260k/tokenizer.model"));
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_EQ(tok.bos_token_id(), 1);
  EXPECT_EQ(tok.eos_token_id(), 2);
  EXPECT_EQ(tok.id_to_token(1), "<s>");
  EXPECT_TRUE(tok.is_special(1));
  EXPECT_FALSE(tok.is_special(300));
  // SentencePiece's normalizer removes repeated, leading and trailing whitespace.
  EXPECT_EQ(tok.encode("  Once   upon a time  "), tok.encode("Once upon a time"));
  const Ids ids = tok.encode("Once upon a time", /*add_special_tokens=*/true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(tok.decode(ids, /*skip_special_tokens=*/true), "Once upon a time");
  EXPECT_EQ(tok.decode(ids), "<s> Once upon a time");
  // Special pieces written in the text are recognised, as by Hugging Face's LlamaTokenizer.
  EXPECT_EQ(tok.encode("Hi</s>"), concat(tok.encode("Hi"), {2}));
}

TEST(TokenizerSentencePiece, JsonBpeAgreesWithLibsentencepieceOnCleanText) {
  RANKTUNE_REQUIRE_SENTENCEPIECE();
  RANKTUNE_REQUIRE_SHARED("models/stories260k/tokenizer.json");
  RANKTUNE_REQUIRE_SHARED("data/gsm8k/test.jsonl");
  const Tokenizer json_tok = Tokenizer::from_pretrained(shared_path("models/stories260k/tokenizer.json"));
  const Tokenizer model_tok = Tokenizer::from_pretrained(shared_path("models/stories260k/tokenizer.model"));
  EXPECT_EQ(json_tok.kind(), "bpe-sentencepiece");
  std::vector<std::string> texts = gsm8k_questions(60, /*clean_whitespace=*/true);
  for (const char* s : {"Once upon a time, there was a little girl named Lily.", "She said, \"I want to play!\"",
                        "Tom's dog ran 3.5 miles in 42 minutes.", "Füße, naïve café – 日本語 🙂", "a\tb\nc",
                        "x=y+z; (1/2) * [3] {4} #5 @6 ~7 ^8 |9"}) {
    texts.push_back(s);
  }
  for (const auto& text : texts) {
    EXPECT_EQ(json_tok.encode(text), model_tok.encode(text)) << json(text).dump();
    EXPECT_EQ(json_tok.encode(text, true), model_tok.encode(text, true)) << json(text).dump();
    EXPECT_EQ(json_tok.decode(json_tok.encode(text)), text);
  }
}

TEST(TokenizerSentencePiece, DirectoryPrefersTokenizerJsonWhichKeepsExtraWhitespace) {
  RANKTUNE_REQUIRE_SENTENCEPIECE();
  // Like transformers' AutoTokenizer (fast): tokenizer.json wins over tokenizer.model. The two
  // differ on repeated/leading/trailing whitespace, which only SentencePiece removes.
  RANKTUNE_REQUIRE_SHARED("models/stories260k/tokenizer.json");
  const Tokenizer dir_tok = Tokenizer::from_pretrained(shared_path("models/stories260k"));
  const Tokenizer model_tok = Tokenizer::from_pretrained(shared_path("models/stories260k/tokenizer.model"));
  EXPECT_EQ(dir_tok.source(), shared_path("models/stories260k/tokenizer.json"));
  EXPECT_EQ(dir_tok.kind(), "bpe-sentencepiece");
  EXPECT_NE(dir_tok.encode("Hello  world"), model_tok.encode("Hello  world"));
  EXPECT_EQ(dir_tok.decode(dir_tok.encode("Hello  world")), "Hello  world");
  EXPECT_EQ(model_tok.decode(model_tok.encode("Hello  world")), "Hello world");
  // tokenizer_config.json beside it: add_bos_token, bos/eos/unk tokens.
  EXPECT_EQ(dir_tok.bos_token_id(), 1);
  EXPECT_EQ(dir_tok.eos_token_id(), 2);
  EXPECT_EQ(dir_tok.pad_token_id(), std::nullopt);
  EXPECT_EQ(dir_tok.encode("Hello", true), concat({1}, dir_tok.encode("Hello")));
  EXPECT_TRUE(dir_tok.is_special(0));  // unk_token from the config
}

// ==== special tokens and vocabulary queries =====================================================

TEST(TokenizerSpecialTokens, IdsKindsAndSizesOfTheSharedVocabularies) {
  RANKTUNE_REQUIRE_SHARED("tokenizers/llama-bpe/tokenizer.json");
  struct Expected {
    const char* name;
    const char* kind;
    int64_t vocab_size;
    std::optional<int64_t> bos, eos;
  };
  const Expected expected[] = {{"gpt-2", "bpe-byte-level", 50257, std::nullopt, 50256},
                               {"llama-spm", "bpe-sentencepiece", 32000, 1, 2},
                               {"phi-3", "bpe-sentencepiece", 32064, 1, 32000},
                               {"qwen2", "bpe-byte-level", 151646, std::nullopt, 151643},
                               {"llama-bpe", "bpe-byte-level", 128256, 128000, 128001}};
  for (const auto& e : expected) {
    const Tokenizer tok = Tokenizer::from_pretrained(shared_path(std::string("tokenizers/") + e.name));
    EXPECT_EQ(tok.kind(), e.kind) << e.name;
    EXPECT_EQ(tok.vocab_size(), e.vocab_size) << e.name;
    EXPECT_EQ(tok.bos_token_id(), e.bos) << e.name;
    EXPECT_EQ(tok.eos_token_id(), e.eos) << e.name;
    EXPECT_EQ(tok.pad_token_id(), std::nullopt) << e.name;
    EXPECT_EQ(tok.source(), shared_path(std::string("tokenizers/") + e.name + "/tokenizer.json"));
  }
}

TEST(TokenizerSpecialTokens, SpecialTokensInTextBecomeTheirIds) {
  RANKTUNE_REQUIRE_SHARED("tokenizers/qwen2/tokenizer.json");
  const Tokenizer gpt2 = Tokenizer::from_pretrained(shared_path("tokenizers/gpt-2"));
  EXPECT_EQ(gpt2.encode("Hello<|endoftext|>world"), concat(concat(gpt2.encode("Hello"), {50256}), gpt2.encode("world")));
  EXPECT_EQ(gpt2.decode(gpt2.encode("Hello<|endoftext|>world")), "Hello<|endoftext|>world");
  EXPECT_EQ(gpt2.decode(gpt2.encode("Hello<|endoftext|>world"), /*skip_special_tokens=*/true), "Helloworld");

  const Tokenizer qwen = Tokenizer::from_pretrained(shared_path("tokenizers/qwen2"));
  const std::string chat = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
  const Ids ids = qwen.encode(chat);
  EXPECT_EQ(ids.front(), 151644);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 151645), 1);
  EXPECT_EQ(qwen.decode(ids), chat);
  EXPECT_EQ(qwen.decode(ids, true), "user\nWhat is 2+2?\nassistant\n");
  EXPECT_TRUE(qwen.is_special(151644));
  EXPECT_FALSE(qwen.is_special(ids[1]));

  // SentencePiece-style (legacy): the text after a special token gets its own "▁" prefix.
  const Tokenizer llama = Tokenizer::from_pretrained(shared_path("tokenizers/llama-spm"));
  EXPECT_EQ(llama.encode("<s>Hello"), concat({1}, llama.encode("Hello")));
  EXPECT_EQ(llama.decode(llama.encode("<s>Hello")), "<s> Hello");

  const Tokenizer llama3 = Tokenizer::from_pretrained(shared_path("tokenizers/llama-bpe"));
  EXPECT_EQ(llama3.encode("<|begin_of_text|>Hi"), concat({128000}, llama3.encode("Hi")));
}

TEST(TokenizerSpecialTokens, AddSpecialTokensFollowsThePostProcessor) {
  RANKTUNE_REQUIRE_SHARED("tokenizers/llama-spm/tokenizer.json");
  const Tokenizer llama = Tokenizer::from_pretrained(shared_path("tokenizers/llama-spm"));
  EXPECT_EQ(llama.encode("Hello world", true), concat({1}, llama.encode("Hello world")));  // TemplateProcessing
  const Tokenizer gpt2 = Tokenizer::from_pretrained(shared_path("tokenizers/gpt-2"));
  EXPECT_EQ(gpt2.encode("Hello world", true), gpt2.encode("Hello world"));  // ByteLevel adds nothing
}

TEST(TokenizerSpecialTokens, TokenAndIdLookups) {
  RANKTUNE_REQUIRE_SHARED("tokenizers/gpt-2/tokenizer.json");
  const Tokenizer gpt2 = Tokenizer::from_pretrained(shared_path("tokenizers/gpt-2"));
  EXPECT_EQ(gpt2.token_to_id("hello"), 31373);
  EXPECT_EQ(gpt2.id_to_token(31373), "hello");
  EXPECT_EQ(gpt2.token_to_id("<|endoftext|>"), 50256);
  EXPECT_EQ(gpt2.token_to_id("no such token"), std::nullopt);
  EXPECT_FALSE(gpt2.is_special(31373));
  EXPECT_TRUE(gpt2.is_special(50256));
  EXPECT_THAT(error_of([&] { gpt2.id_to_token(50257); }), HasSubstr("no token has id 50257"));
  EXPECT_THAT(error_of([&] { gpt2.id_to_token(-1); }), HasSubstr("gpt-2/tokenizer.json"));
  // Ids that name no token are skipped by decode, as in Hugging Face tokenizers.
  EXPECT_EQ(gpt2.decode({31373, 999999, -5}), "hello");
}

TEST(TokenizerSpecialTokens, TokenizerConfigSuppliesSpecialTokensAndAddBosEos) {
  TempDir dir;
  json tokenizer = tiny_tokenizer("abc <>/s");
  const int64_t n = tokenizer["model"]["vocab"].size();
  tokenizer["added_tokens"] = json::array({added_token(n, "<s>", true), added_token(n + 1, "</s>", true)});
  tokenizer["model"]["vocab"]["<pad>"] = n + 2;  // in the vocabulary, but not an added token
  dir.write("tokenizer.json", tokenizer.dump());
  dir.write("tokenizer_config.json", R"({"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
                                         "pad_token": "<pad>", "unk_token": null,
                                         "add_bos_token": true, "add_eos_token": true})");
  const Tokenizer tok = Tokenizer::from_pretrained(dir.path());
  EXPECT_EQ(tok.bos_token_id(), n);
  EXPECT_EQ(tok.eos_token_id(), n + 1);
  EXPECT_EQ(tok.pad_token_id(), n + 2);
  EXPECT_EQ(tok.encode("ab", true), (Ids{n, char_ids(tok, "a")[0], char_ids(tok, "b")[0], n + 1}));
  // The config's pad token became a special added token: cut out of text, skipped by decode.
  EXPECT_EQ(tok.encode("a<pad>b"), (Ids{char_ids(tok, "a")[0], n + 2, char_ids(tok, "b")[0]}));
  EXPECT_TRUE(tok.is_special(n + 2));
  EXPECT_EQ(tok.decode(tok.encode("a<pad>b", true), /*skip_special_tokens=*/true), "a b");  // no decoder: joined by spaces

  dir.write("tokenizer_config.json", R"({"bos_token": null})");
  EXPECT_EQ(Tokenizer::from_pretrained(dir.path()).bos_token_id(), std::nullopt);  // null means none
  EXPECT_EQ(Tokenizer::from_pretrained(dir.path()).eos_token_id(), n + 1);          // absent: by name
}

// ==== added tokens ================================================================================

TEST(TokenizerAddedTokens, LstripRstripAndSingleWordAsHuggingFace) {
  // tokenizers' added_vocabulary.rs options_use_cases, without its Lowercase normalizer.
  TempDir dir;
  json tokenizer = tiny_tokenizer("[CLS] my name is anthony [SEP]");
  const int64_t n = tokenizer["model"]["vocab"].size();
  tokenizer["added_tokens"] = json::array({added_token(n, "my", false, /*lstrip=*/true, /*rstrip=*/true),
                                          added_token(n + 1, "name", false),
                                          added_token(n + 2, "ony", false, false, false, /*single_word=*/true),
                                          added_token(n + 3, "[CLS]", true), added_token(n + 4, "[SEP]", true)});
  const Tokenizer tok = load_json(dir, tokenizer);
  EXPECT_EQ(tok.encode("[CLS] my name is anthony [SEP]"),
            concat(concat({n + 3, n, n + 1}, char_ids(tok, " is anthony ")), {n + 4}));
  EXPECT_EQ(tok.encode("ony is ony"), concat(concat({n + 2}, char_ids(tok, " is ")), {n + 2}));
  EXPECT_FALSE(tok.is_special(n));
  EXPECT_TRUE(tok.is_special(n + 3));
}

TEST(TokenizerAddedTokens, SingleWordTreatsCombiningMarksAsWordCharacters) {
  // tokenizers' test_single_word_is_unicode_correct: "◌̰<mask>" is inside a word.
  TempDir dir;
  json tokenizer = tiny_tokenizer("<mask>, - \u25CC\u0330");
  const int64_t n = tokenizer["model"]["vocab"].size();
  tokenizer["added_tokens"] = json::array({added_token(n, "<mask>", false, false, false, /*single_word=*/true)});
  const Tokenizer tok = load_json(dir, tokenizer);
  EXPECT_EQ(tok.encode("<mask>, <mask>- \u25CC\u0330<mask>"),
            concat(concat(concat({n}, char_ids(tok, ", ")), {n}), char_ids(tok, "- \u25CC\u0330<mask>")));
}

TEST(TokenizerAddedTokens, StripTakesUnicodeWhitespaceButNotTwice) {
  // tokenizers' test_lstrip_unicode_space.
  TempDir dir;
  json tokenizer = tiny_tokenizer("Hi there<mask>\t\u2000 ");
  const int64_t n = tokenizer["model"]["vocab"].size();
  tokenizer["added_tokens"] = json::array({added_token(n, "<mask>", false, /*lstrip=*/true, /*rstrip=*/true, /*single_word=*/true)});
  const Tokenizer tok = load_json(dir, tokenizer);
  EXPECT_EQ(tok.encode("Hi <mask> there\t<mask>\t<mask>\u2000"),
            concat(concat(concat(char_ids(tok, "Hi"), {n}), char_ids(tok, "there")), {n, n}));
}

TEST(TokenizerAddedTokens, NormalizedTokensMatchAfterNormalizationOthersBefore) {
  TempDir dir;
  json tokenizer = tiny_tokenizer("abcdxyz_ ");
  const int64_t n = tokenizer["model"]["vocab"].size();
  tokenizer["normalizer"] = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "_"}};
  tokenizer["added_tokens"] = json::array({added_token(n, "a b", false, false, false, false, /*normalized=*/true),
                                          added_token(n + 1, "c d", false, false, false, false, /*normalized=*/false)});
  const Tokenizer tok = load_json(dir, tokenizer);
  // "a b" is looked for as "a_b" in the normalized text, "c d" in the raw text.
  EXPECT_EQ(tok.encode("xa by c dz"), concat(concat(concat(char_ids(tok, "x"), {n}), char_ids(tok, "y_")),
                                               concat({n + 1}, char_ids(tok, "z"))));
  EXPECT_EQ(tok.encode("xa_by"), concat(concat(char_ids(tok, "x"), {n}), char_ids(tok, "y")));
  EXPECT_EQ(tok.encode("c_d"), char_ids(tok, "c_d"));
}

TEST(TokenizerAddedTokens, LongestMatchWinsAtTheLeftmostPosition) {
  TempDir dir;
  json tokenizer = tiny_tokenizer("<|ab>");
  const int64_t n = tokenizer["model"]["vocab"].size();
  tokenizer["added_tokens"] = json::array({added_token(n, "<|a", true), added_token(n + 1, "<|a|>", true),
                                          added_token(n + 2, "a|>b", true)});
  const Tokenizer tok = load_json(dir, tokenizer);
  EXPECT_EQ(tok.encode("<|a|>b"), concat({n + 1}, char_ids(tok, "b")));
  EXPECT_EQ(tok.encode("<|ab"), concat({n}, char_ids(tok, "b")));
}

// ==== BPE model options ===========================================================================

TEST(TokenizerBpe, MergesAsPairsEqualMergesAsStrings) {
  TempDir dir;
  const json as_strings = tiny_tokenizer("abc", {"ab", "abc"}, {"a b", "ab c"});
  const json as_pairs = tiny_tokenizer("abc", {"ab", "abc"}, json::array({json::array({"a", "b"}), json::array({"ab", "c"})}));
  const Tokenizer s = load_json(dir, as_strings, "strings.json");
  const Tokenizer p = load_json(dir, as_pairs, "pairs.json");
  EXPECT_EQ(s.encode("abcab"), (Ids{*s.token_to_id("abc"), *s.token_to_id("ab")}));
  EXPECT_EQ(p.encode("abcab"), s.encode("abcab"));
}

TEST(TokenizerBpe, LowestRankMergesFirstLeftmostOnTies) {
  TempDir dir;
  // "b c" outranks "a b": abc -> a bc; equal pairs merge left to right: aaa -> aa a.
  const Tokenizer tok = load_json(dir, tiny_tokenizer("abc", {"ab", "bc", "aa"}, {"b c", "a b", "a a"}));
  EXPECT_EQ(tok.encode("abc"), (Ids{*tok.token_to_id("a"), *tok.token_to_id("bc")}));
  EXPECT_EQ(tok.encode("aaa"), (Ids{*tok.token_to_id("aa"), *tok.token_to_id("a")}));
}

TEST(TokenizerBpe, IgnoreMergesEmitsAWordThatIsInTheVocabulary) {
  TempDir dir;
  json tokenizer = tiny_tokenizer("abc", {"abc"}, json::array());  // "abc" unreachable by merges
  const Tokenizer without = load_json(dir, tokenizer, "without.json");
  tokenizer["model"]["ignore_merges"] = true;
  const Tokenizer with = load_json(dir, tokenizer, "with.json");
  EXPECT_EQ(without.encode("abc"), char_ids(without, "abc"));
  EXPECT_EQ(with.encode("abc"), (Ids{*with.token_to_id("abc")}));
}

TEST(TokenizerBpe, ByteFallbackThenUnkAndFuseUnk) {
  TempDir dir;
  json tokenizer = tiny_tokenizer("ab", {"<0xC3>", "<0xA9>"});
  tokenizer["model"]["byte_fallback"] = true;
  const Tokenizer fallback = load_json(dir, tokenizer, "fallback.json");
  // é is C3 A9: both byte tokens exist. ü is C3 BC: <0xBC> is missing, so it becomes <unk>.
  EXPECT_EQ(fallback.encode("aéb"), (Ids{*fallback.token_to_id("a"), *fallback.token_to_id("<0xC3>"),
                                         *fallback.token_to_id("<0xA9>"), *fallback.token_to_id("b")}));
  EXPECT_EQ(fallback.encode("üü"), (Ids{0, 0}));
  tokenizer["model"]["fuse_unk"] = true;
  const Tokenizer fused = load_json(dir, tokenizer, "fused.json");
  EXPECT_EQ(fused.encode("üüaü"), (Ids{0, *fused.token_to_id("a"), 0}));
}

TEST(TokenizerBpe, ByteFallbackDecodingReplacesInvalidBytes) {
  RANKTUNE_REQUIRE_SHARED("tokenizers/llama-spm/tokenizer.json");
  const Tokenizer llama = Tokenizer::from_pretrained(shared_path("tokenizers/llama-spm"));
  const Ids llama_ids = llama.encode("🦙");  // not in the vocabulary: four <0xNN> tokens
  EXPECT_EQ(llama.decode(llama_ids), "🦙");
  const Ids truncated(llama_ids.begin(), llama_ids.end() - 1);
  EXPECT_THAT(llama.decode(truncated), HasSubstr("\xEF\xBF\xBD"));
}

// ==== pre-tokenizers, normalizers, decoders =====================================================

TEST(TokenizerPreTokenizers, SplitBehaviorsMatchHuggingFaceDocs) {
  using ranktune::tokenizer::SplitBehavior;
  const std::string text = "the-final--countdown";
  const auto matches = ranktune::tokenizer::Pattern::literal("-").find_all(text);
  const auto pieces = [&](SplitBehavior behavior, bool invert) {
    std::vector<std::string> out;
    for (const auto& [b, e] : ranktune::tokenizer::split_ranges(text, matches, behavior, invert)) {
      out.push_back(text.substr(b, e - b));
    }
    return out;
  };
  EXPECT_THAT(pieces(SplitBehavior::removed, false), ElementsAre("the", "final", "countdown"));
  EXPECT_THAT(pieces(SplitBehavior::isolated, false), ElementsAre("the", "-", "final", "-", "-", "countdown"));
  EXPECT_THAT(pieces(SplitBehavior::merged_with_previous, false), ElementsAre("the-", "final-", "-", "countdown"));
  EXPECT_THAT(pieces(SplitBehavior::merged_with_next, false), ElementsAre("the", "-final", "-", "-countdown"));
  EXPECT_THAT(pieces(SplitBehavior::contiguous, false), ElementsAre("the", "-", "final", "--", "countdown"));
  EXPECT_THAT(pieces(SplitBehavior::removed, true), ElementsAre("-", "-", "-"));
}

TEST(TokenizerPreTokenizers, MetaspacePreTokenizerMatchesTheLegacyNormalizer) {
  // transformers' newer Llama conversion: Metaspace(prepend_scheme="first", split=false)
  // instead of the Prepend/Replace normalizers. Same ids, except for text that starts with a
  // space and text after a special token (no "▁" is added there).
  RANKTUNE_REQUIRE_SHARED("tokenizers/llama-spm/tokenizer.json");
  const std::string dir_path = shared_path("tokenizers/llama-spm");
  const Tokenizer legacy = Tokenizer::from_pretrained(dir_path);
  json tokenizer = json::parse(ranktune::io::read_file(dir_path + "/tokenizer.json"));
  tokenizer["normalizer"] = nullptr;
  tokenizer["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"},
                                {"split", false}};
  TempDir dir;
  const Tokenizer meta = load_json(dir, tokenizer);
  for (const auto& c : read_vectors(dir_path)) {
    if (!c.text.empty() && c.text[0] == ' ') continue;
    EXPECT_EQ(meta.encode(c.text), c.ids) << json(c.text).dump();
  }
  EXPECT_EQ(meta.encode(" Hello"), legacy.encode("Hello"));
  const Ids after_bos = meta.encode("<s>Hello");
  ASSERT_GE(after_bos.size(), 2u);
  EXPECT_EQ(after_bos[0], 1);
  EXPECT_NE(meta.id_to_token(after_bos[1]).rfind("\u2581", 0), 0u);
}

TEST(TokenizerPreTokenizers, DigitsAndSplitRegexOnAByteLevelVocabulary) {
  RANKTUNE_REQUIRE_SHARED("tokenizers/gpt-2/tokenizer.json");
  json tokenizer = json::parse(ranktune::io::read_file(shared_path("tokenizers/gpt-2/tokenizer.json")));
  tokenizer["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Digits"}, {"individual_digits", true}},
        {{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "MergedWithNext"}, {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  TempDir dir;
  const Tokenizer tok = load_json(dir, tokenizer);
  const Tokenizer gpt2 = Tokenizer::from_pretrained(shared_path("tokenizers/gpt-2"));
  // Every digit alone, every word with the spaces before it.
  EXPECT_EQ(tok.encode("year 2024"), concat(gpt2.encode("year"), {*gpt2.token_to_id("\u0120"), *gpt2.token_to_id("2"),
                                                                   *gpt2.token_to_id("0"), *gpt2.token_to_id("2"),
                                                                   *gpt2.token_to_id("4")}));
  EXPECT_EQ(tok.encode("hello world"), gpt2.encode("hello world"));
  EXPECT_EQ(tok.decode(tok.encode("year 2024, ok")), "year 2024, ok");
}

// ==== Unicode =====================================================================================

TEST(TokenizerUnicode, NfcAndNfdMatchPythonUnicodedata) {
  using ranktune::tokenizer::to_nfc;
  using ranktune::tokenizer::to_nfd;
  // {input, NFC, NFD} from Python 3.11's unicodedata.normalize.
  const std::vector<std::array<std::string, 3>> cases = {
      {"Cafe\u0301", "Caf\u00e9", "Cafe\u0301"},
      {"\u1e0b\u0323", "\u1e0d\u0307", "d\u0323\u0307"},
      {"\u1100\u1161\u11a8", "\uac01", "\u1100\u1161\u11a8"},
      {"\u212b", "\u00c5", "A\u030a"},
      {"\u0958", "\u0915\u093c", "\u0915\u093c"},  // excluded from composition
      {"a\u0302\u0323", "\u1ead", "a\u0323\u0302"},  // canonical reordering
      {"\u1e9b\u0323", "\u1e9b\u0323", "\u017f\u0323\u0307"},
      {"e\u0301\u0301", "\u00e9\u0301", "e\u0301\u0301"},  // the second accent is blocked
      {"A\u0300\u0316", "\u00c0\u0316", "A\u0316\u0300"},
      {"\ud55c\uad6d\uc5b4", "\ud55c\uad6d\uc5b4", "\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165"},
      {"\u0374", "\u02b9", "\u02b9"},
      {"\u00c5\u0327", "\u00c5\u0327", "A\u0327\u030a"},
      {"\u0f73", "\u0f71\u0f72", "\u0f71\u0f72"},
      {"plain ascii", "plain ascii", "plain ascii"},
  };
  for (const auto& [input, nfc, nfd] : cases) {
    EXPECT_EQ(to_nfc(input), nfc) << json(input).dump();
    EXPECT_EQ(to_nfd(input), nfd) << json(input).dump();
  }
}

TEST(TokenizerUnicode, Qwen2NormalizesToNfcBeforeEncoding) {
  RANKTUNE_REQUIRE_SHARED("tokenizers/qwen2/tokenizer.json");
  const Tokenizer qwen = Tokenizer::from_pretrained(shared_path("tokenizers/qwen2"));
  EXPECT_EQ(qwen.encode("Cafe\u0301 \u1100\u1161\u11a8"), qwen.encode("Caf\u00e9 \uac01"));
  const Tokenizer gpt2 = Tokenizer::from_pretrained(shared_path("tokenizers/gpt-2"));  // no normalizer
  EXPECT_NE(gpt2.encode("Cafe\u0301"), gpt2.encode("Caf\u00e9"));
}

// ==== errors ======================================================================================

TEST(TokenizerErrors, MissingFileOrDirectoryContentsNameThePath) {
  TempDir dir;
  const std::string missing = dir.file("nowhere/tokenizer.json");
  EXPECT_THAT(error_of([&] { Tokenizer::from_pretrained(missing); }), HasSubstr(missing + ": no such file"));
  EXPECT_THAT(error_of([&] { Tokenizer::from_pretrained(dir.path()); }),
              HasSubstr(dir.path() + ": no tokenizer.json or tokenizer.model"));
}

TEST(TokenizerErrors, InvalidJsonNamesTheFileAndPosition) {
  TempDir dir;
  dir.write("tokenizer.json", "{\"model\": {\"type\": \"BPE\",");
  const std::string message = error_of([&] { Tokenizer::from_pretrained(dir.path()); });
  EXPECT_THAT(message, HasSubstr(dir.file("tokenizer.json") + ": invalid JSON"));
  EXPECT_THAT(message, HasSubstr("line 1"));
}

TEST(TokenizerErrors, UnsupportedComponentsNameTheFileTheKeyAndTheType) {
  TempDir dir;
  const std::string file = dir.file("tokenizer.json");
  const auto message_for = [&](const std::function<void(json&)>& edit) {
    json tokenizer = tiny_tokenizer("ab");
    edit(tokenizer);
    dir.write("tokenizer.json", tokenizer.dump());
    return error_of([&] { Tokenizer::from_pretrained(file); });
  };
  std::string m = message_for([](json& t) { t["model"]["type"] = "WordPiece"; });
  EXPECT_THAT(m, HasSubstr(file + ": 'model.type': unsupported model type 'WordPiece' (supported: BPE)"));
  m = message_for([](json& t) { t["model"]["type"] = "Unigram"; });
  EXPECT_THAT(m, HasSubstr("unsupported model type 'Unigram'"));
  m = message_for([](json& t) {
    t["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Lowercase"}}}}};
  });
  EXPECT_THAT(m, HasSubstr(file + ": 'normalizer.normalizers[1].type': unsupported normalizer type 'Lowercase'"));
  m = message_for([](json& t) { t["pre_tokenizer"] = {{"type", "Whitespace"}}; });
  EXPECT_THAT(m, HasSubstr(file + ": 'pre_tokenizer.type': unsupported pre-tokenizer type 'Whitespace'"));
  m = message_for([](json& t) { t["decoder"] = {{"type", "WordPiece"}, {"prefix", "##"}}; });
  EXPECT_THAT(m, HasSubstr(file + ": 'decoder.type': unsupported decoder type 'WordPiece'"));
  m = message_for([](json& t) { t["model"]["merges"] = {"a q"}; });
  EXPECT_THAT(m, HasSubstr(file + ": model.merges[0]: token 'q' is not in the vocabulary"));
  m = message_for([](json& t) { t["model"]["merges"] = {"a b c"}; });
  EXPECT_THAT(m, HasSubstr(file + ": 'model.merges[0]': expected \"left right\""));
  m = message_for([](json& t) {
    t["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  });
  EXPECT_THAT(m, HasSubstr(file + ": 'pre_tokenizer.pattern': invalid regular expression '(unclosed'"));
  m = message_for([](json& t) { t["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", "x"}}}, {"behavior", "Sideways"}}; });
  EXPECT_THAT(m, HasSubstr("'pre_tokenizer.behavior': unknown split behavior 'Sideways'"));
  m = message_for([](json& t) { t.erase("model"); });
  EXPECT_THAT(m, HasSubstr(file + ": 'model': missing field"));
}

TEST(TokenizerErrors, BadModelFileAndBadTextAreReported) {
  TempDir dir;
  dir.write("broken.model", "this is not a protobuf");
  if (sentencepiece_loadable()) {
    EXPECT_THAT(error_of([&] { Tokenizer::from_pretrained(dir.file("broken.model")); }),
                HasSubstr(dir.file("broken.model") + ": cannot load the SentencePiece model"));
  }
  // A tokenizer_config.json beside the file is read, and checked.
  dir.write("tok.json", tiny_tokenizer("ab").dump());
  dir.write("tokenizer_config.json", R"({"bos_token": 3})");
  EXPECT_THAT(error_of([&] { Tokenizer::from_pretrained(dir.file("tok.json")); }),
              HasSubstr(dir.file("tokenizer_config.json") + ": 'bos_token': expected a string or an object"));
  dir.write("tokenizer_config.json", "{}");
  const Tokenizer ok = Tokenizer::from_pretrained(dir.file("tok.json"));
  EXPECT_THAT(error_of([&] { ok.encode("a\xFF"); }), HasSubstr("not valid UTF-8 (byte 1)"));
}

// ==== speed and threads ===========================================================================

// A guard against a catastrophic slowdown (a quadratic merge loop, a regex recompiled per text), not
// a benchmark: the limits are 7-10x what one core needs. Timed in this thread's CPU time, which other
// processes on a busy machine do not inflate (wall time under a load of 16 on 2 cores did).
TEST(TokenizerPerformance, LoadsLargeVocabulariesAndEncodesThousandsOfTextsPerSecond) {
  RANKTUNE_REQUIRE_SHARED("tokenizers/llama-bpe/tokenizer.json");
  RANKTUNE_REQUIRE_SHARED("data/gsm8k/test.jsonl");
  const auto cpu_seconds = [] {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  };
  const std::vector<std::string> questions = gsm8k_questions(1319, /*clean_whitespace=*/false);
  for (const char* name : {"llama-bpe", "llama-spm"}) {
    const double t0 = cpu_seconds();
    const Tokenizer tok = Tokenizer::from_pretrained(shared_path(std::string("tokenizers/") + name));
    const double load_seconds = cpu_seconds() - t0;
    const double t1 = cpu_seconds();
    size_t n_tokens = 0;
    for (const auto& q : questions) n_tokens += tok.encode(q).size();
    const double seconds = std::max(cpu_seconds() - t1, 1e-6);
    const double per_second = static_cast<double>(questions.size()) / seconds;
    std::cout << "[ speed    ] " << name << ": load " << load_seconds << " s, " << static_cast<int64_t>(per_second)
              << " GSM8K questions/s (" << static_cast<int64_t>(static_cast<double>(n_tokens) / seconds)
              << " tokens/s), CPU time of this thread\n";
    EXPECT_LT(load_seconds, 3.0) << name;  // ~0.4 s for the 6.6 MB llama-bpe file
    EXPECT_GT(per_second, 2000) << name;   // ~20k-100k on one core
  }
}

TEST(TokenizerThreads, ConcurrentEncodingGivesTheSerialIds) {
  RANKTUNE_REQUIRE_SHARED("tokenizers/qwen2/tokenizer.json");
  RANKTUNE_REQUIRE_SHARED("data/gsm8k/test.jsonl");
  const Tokenizer tok = Tokenizer::from_pretrained(shared_path("tokenizers/qwen2"));
  const std::vector<std::string> questions = gsm8k_questions(400, false);
  std::vector<Ids> serial;
  for (const auto& q : questions) serial.push_back(tok.encode(q));
  std::vector<std::vector<Ids>> results(2);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] {
      const Tokenizer copy = tok;  // copies share the loaded tokenizer
      for (size_t i = 0; i < questions.size(); ++i) results[t].push_back(copy.encode(questions[(i + t * 7) % questions.size()]));
    });
  }
  for (auto& th : threads) th.join();
  for (size_t t = 0; t < results.size(); ++t) {
    for (size_t i = 0; i < questions.size(); ++i) EXPECT_EQ(results[t][i], serial[(i + t * 7) % questions.size()]);
  }
}
