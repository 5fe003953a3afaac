// tokenizer.json: Hugging Face tokenizers' pipeline for a BPE model.
//   added-token split -> normalizer -> pre-tokenizer -> BPE -> (post-processor)
//   ids -> tokens -> decoder -> text

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "tokenizer/backend.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoders.h"
#include "tokenizer/json_access.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/post_processors.h"
#include "tokenizer/pre_tokenizers.h"

#include <algorithm>
#include <initializer_list>

namespace ranktune::tokenizer {

namespace {

class JsonTokenizer : public Backend {
 public:
  std::string kind() const override { return kind_; }

  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> ids;
    ids.reserve(text.size() / 3 + 4);
    std::vector<Piece> pieces;
    for (Segment& segment : added_.split(text, normalizer_.get())) {
      if (segment.token_id >= 0) {
        ids.push_back(segment.token_id);
        continue;
      }
      pieces.clear();
      pieces.push_back(std::move(segment.piece));
      if (pre_tokenizer_ != nullptr) pre_tokenizer_->pre_tokenize(pieces);
      for (const Piece& piece : pieces) model_->tokenize(piece.text, ids);
    }
    return ids;
  }

  void add_special_tokens(std::vector<int64_t>& ids) const override {
    if (post_processor_ != nullptr) post_processor_->process(ids);
  }

  std::string decode(const std::vector<int64_t>& ids) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int64_t id : ids) {
      if (const AddedToken* added = added_.find(id)) {
        tokens.push_back(added->content);
      } else if (const std::string* token = model_->id_to_token(id)) {
        tokens.push_back(*token);
      }
    }
    if (decoder_ == nullptr) {
      std::string joined;
      for (size_t i = 0; i < tokens.size(); ++i) joined += (i == 0 ? "" : " ") + tokens[i];
      return joined;
    }
    decoder_->decode_chain(tokens);
    std::string text;
    for (const auto& t : tokens) text += t;
    return text;
  }

  int64_t vocab_size() const override {
    int64_t max_id = model_->max_id();
    for (const auto& token : added_.tokens()) max_id = std::max(max_id, token.id);
    return max_id + 1;
  }

  std::optional<int64_t> token_to_id(const std::string& token) const override {
    if (const AddedToken* added = added_.find(token)) return added->id;
    return model_->token_to_id(token);
  }

  std::optional<std::string> id_to_token(int64_t id) const override {
    if (const AddedToken* added = added_.find(id)) return added->content;
    if (const std::string* token = model_->id_to_token(id)) return *token;
    return std::nullopt;
  }

  bool is_special(int64_t id) const override {
    const AddedToken* added = added_.find(id);
    return added != nullptr && added->special;
  }

  std::optional<int64_t> role_id(SpecialRole role) const override {
    switch (role) {
      case SpecialRole::bos: return conventional_id({"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"});
      case SpecialRole::eos: return conventional_id({"</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>"});
      case SpecialRole::pad: return conventional_id({"<pad>", "<|pad|>", "[PAD]", "<|padding|>"});
      case SpecialRole::unk:
        if (model_->options().unk_token) return model_->token_to_id(*model_->options().unk_token);
        return conventional_id({"<unk>", "[UNK]"});
    }
    return std::nullopt;
  }

  bool register_special_token(const AddedToken& token) override {
    if (added_.find(token.content) != nullptr) return true;  // already an added token: keep its flags
    const auto id = model_->token_to_id(token.content);
    if (!id) return false;
    AddedToken special = token;
    special.id = *id;
    special.special = true;
    added_.add(special);
    added_.build(normalizer_.get());
    return true;
  }

 private:
  friend std::unique_ptr<Backend> ranktune::tokenizer::load_tokenizer_json(const std::string& path);

  // The one candidate that is a special added token, if exactly one is. Ordinary vocabulary
  // entries do not count: Qwen2's byte-level vocabulary has a plain "<s>".
  std::optional<int64_t> conventional_id(std::initializer_list<const char*> names) const {
    std::optional<int64_t> found;
    for (const char* name : names) {
      const AddedToken* token = added_.find(std::string_view(name));
      if (token == nullptr || !token->special) continue;
      if (found) return std::nullopt;  // ambiguous
      found = token->id;
    }
    return found;
  }

  std::string kind_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  AddedVocabulary added_;
};

// ---- loading ---------------------------------------------------------------------------------

BpeModel::Vocab read_vocab(const json& model, const JsonPath& at) {
  const json& vocab = required_field(model, "vocab", at);
  const JsonPath vocab_at = at / "vocab";
  if (!vocab.is_object()) vocab_at.fail("expected an object of token -> id, got " + json_kind(vocab));
  BpeModel::Vocab out;
  out.reserve(vocab.size());
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      vocab_at.fail("token '" + token + "' has id " + id.dump() + ", expected a non-negative integer");
    }
    out.emplace(token, static_cast<int32_t>(id.get<int64_t>()));
  }
  return out;
}

// Merges as "left right" strings (one space) or as ["left", "right"] pairs.
BpeModel::Merges read_merges(const json& model, const JsonPath& at) {
  BpeModel::Merges out;
  if (!model.contains("merges") || model.at("merges").is_null()) return out;
  const json& merges = model.at("merges");
  const JsonPath merges_at = at / "merges";
  if (!merges.is_array()) merges_at.fail("expected a list, got " + json_kind(merges));
  out.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    if (m.is_string()) {
      const std::string& line = m.get_ref<const std::string&>();
      if (line.rfind("#version", 0) == 0) continue;
      const size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
        merges_at[i].fail("expected \"left right\" (two tokens separated by one space), got \"" + line + "\"");
      }
      out.emplace_back(line.substr(0, space), line.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      out.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      merges_at[i].fail("expected \"left right\" or [\"left\", \"right\"], got " + m.dump());
    }
  }
  return out;
}

std::unique_ptr<BpeModel> read_bpe_model(const json& model, const JsonPath& at) {
  BpeOptions options;
  options.unk_token = optional_string(model, "unk_token", at);
  options.fuse_unk = optional_bool(model, "fuse_unk", false, at);
  options.byte_fallback = optional_bool(model, "byte_fallback", false, at);
  options.ignore_merges = optional_bool(model, "ignore_merges", false, at);
  options.continuing_subword_prefix = optional_string(model, "continuing_subword_prefix", at).value_or("");
  options.end_of_word_suffix = optional_string(model, "end_of_word_suffix", at).value_or("");
  if (model.contains("dropout") && model.at("dropout").is_number() && model.at("dropout").get<double>() > 0) {
    log_warning(c10::str(at.file(), ": model.dropout ", model.at("dropout").get<double>(),
                         " is ignored: encoding is deterministic"));
  }
  try {
    return std::make_unique<BpeModel>(read_vocab(model, at), read_merges(model, at), std::move(options));
  } catch (const Error& e) {
    throw e.with_context(ErrorContext{at.file(), "", -1});
  }
}

std::vector<AddedToken> read_added_tokens(const json& root, const JsonPath& at) {
  std::vector<AddedToken> out;
  if (!root.contains("added_tokens") || root.at("added_tokens").is_null()) return out;
  const json& list = root.at("added_tokens");
  const JsonPath list_at = at / "added_tokens";
  if (!list.is_array()) list_at.fail("expected a list, got " + json_kind(list));
  for (size_t i = 0; i < list.size(); ++i) {
    const json& item = list[i];
    const JsonPath item_at = list_at[i];
    AddedToken token;
    token.id = optional_index(item, "id", -1, item_at);
    if (token.id < 0) (item_at / "id").fail("missing field");
    token.content = required_string(item, "content", item_at);
    token.special = optional_bool(item, "special", false, item_at);
    token.single_word = optional_bool(item, "single_word", false, item_at);
    token.lstrip = optional_bool(item, "lstrip", false, item_at);
    token.rstrip = optional_bool(item, "rstrip", false, item_at);
    token.normalized = optional_bool(item, "normalized", !token.special, item_at);
    out.push_back(std::move(token));
  }
  return out;
}

// Does the component tree contain an object with "type": `type`?
bool uses_type(const json& node, const std::string& type) {
  if (node.is_object()) {
    const auto it = node.find("type");
    if (it != node.end() && it->is_string() && it->get_ref<const std::string&>() == type) return true;
    return std::any_of(node.begin(), node.end(), [&](const json& child) { return uses_type(child, type); });
  }
  if (node.is_array()) return std::any_of(node.begin(), node.end(), [&](const json& child) { return uses_type(child, type); });
  return false;
}

std::string classify(const json& root, const BpeModel& model) {
  const json null_value;
  const auto part = [&](const char* key) -> const json& { return root.contains(key) ? root.at(key) : null_value; };
  if (uses_type(part("pre_tokenizer"), "ByteLevel") || uses_type(part("decoder"), "ByteLevel")) return "bpe-byte-level";
  if (model.options().byte_fallback || uses_type(part("pre_tokenizer"), "Metaspace") ||
      uses_type(part("normalizer"), "Prepend") || uses_type(part("decoder"), "ByteFallback")) {
    return "bpe-sentencepiece";
  }
  return "bpe";
}

}  // namespace

std::unique_ptr<Backend> load_tokenizer_json(const std::string& path) {
  const json root = read_json_file(path);
  const JsonPath at(path);
  expect_object(root, at);
  const json& model = required_field(root, "model", at);
  const JsonPath model_at = at / "model";
  expect_object(model, model_at);
  std::string type;
  if (model.contains("type")) {
    type = required_string(model, "type", model_at);
  } else if (model.contains("merges")) {
    type = "BPE";  // older files leave the type out
  } else {
    (model_at / "type").fail("missing field (only BPE models are supported)");
  }
  if (type != "BPE") (model_at / "type").fail("unsupported model type '" + type + "' (supported: BPE)");

  const json null_value;
  const auto part = [&](const char* key) -> const json& { return root.contains(key) ? root.at(key) : null_value; };
  auto tokenizer = std::make_unique<JsonTokenizer>();
  tokenizer->model_ = read_bpe_model(model, model_at);
  tokenizer->normalizer_ = make_normalizer(part("normalizer"), at / "normalizer");
  tokenizer->pre_tokenizer_ = make_pre_tokenizer(part("pre_tokenizer"), at / "pre_tokenizer");
  tokenizer->post_processor_ = make_post_processor(part("post_processor"), at / "post_processor");
  tokenizer->decoder_ = make_decoder(part("decoder"), at / "decoder");
  tokenizer->kind_ = classify(root, *tokenizer->model_);

  for (AddedToken token : read_added_tokens(root, at)) {
    // tokenizers gives an added token that is in the model's vocabulary the model's id.
    const auto model_id = tokenizer->model_->token_to_id(token.content);
    if (model_id && *model_id != token.id) {
      log_warning(c10::str(path, ": added token '", token.content, "' has id ", token.id,
                           " but the vocabulary gives it ", *model_id, "; using ", *model_id));
      token.id = *model_id;
    }
    tokenizer->added_.add(token);
  }
  tokenizer->added_.build(tokenizer->normalizer_.get());
  return tokenizer;
}

}  // namespace ranktune::tokenizer
