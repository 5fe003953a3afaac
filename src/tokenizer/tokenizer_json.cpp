// tokenizer.json: Hugging Face tokenizers' pipeline for a BPE model.
//   added-token split -> normalizer -> pre-tokenizer -> BPE -> (post-processor)
//   ids -> tokens -> decoder -> text

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/io/file.h"
#include "ranktune/io/json.h"
#include "backend.h"
#include "bpe_model.h"
#include "decoders.h"
#include "normalizers.h"
#include "post_processors.h"
#include "pre_tokenizers.h"

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

BpeModel::Vocab read_vocab(io::SortedJsonFields& model) {
  const io::json& vocab = model.raw("vocab");
  const io::JsonPath vocab_at = model.at("vocab");
  if (!vocab.is_object()) vocab_at.fail("expected an object of token -> id, got " + io::json_type_name(vocab));
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
BpeModel::Merges read_merges(io::SortedJsonFields& model) {
  BpeModel::Merges out;
  if (!model.has_value("merges")) return out;
  const io::json& merges = model.get_list("merges");
  const io::JsonPath merges_at = model.at("merges");
  out.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const io::json& m = merges[i];
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

std::unique_ptr<BpeModel> read_bpe_model(io::SortedJsonFields& model) {
  BpeOptions options;
  options.unk_token = model.get_optional_string("unk_token");
  options.fuse_unk = model.get_bool("fuse_unk", false);
  options.byte_fallback = model.get_bool("byte_fallback", false);
  options.ignore_merges = model.get_bool("ignore_merges", false);
  options.continuing_subword_prefix = model.get_optional_string("continuing_subword_prefix").value_or("");
  options.end_of_word_suffix = model.get_optional_string("end_of_word_suffix").value_or("");
  const io::json& raw = model.object();
  if (raw.contains("dropout") && raw.at("dropout").is_number() && raw.at("dropout").get<double>() > 0) {
    log_warning(c10::str(model.source(), ": model.dropout ", raw.at("dropout").get<double>(),
                         " is ignored: encoding is deterministic"));
  }
  try {
    return std::make_unique<BpeModel>(read_vocab(model), read_merges(model), std::move(options));
  } catch (const Error& e) {
    throw e.with_context(ErrorContext{model.source(), "", -1});
  }
}

std::vector<AddedToken> read_added_tokens(io::SortedJsonFields& root) {
  std::vector<AddedToken> out;
  if (!root.has_value("added_tokens")) return out;
  const io::json& list = root.get_list("added_tokens");
  for (size_t i = 0; i < list.size(); ++i) {
    io::SortedJsonFields item(list[i], root.at("added_tokens")[i]);
    AddedToken token;
    token.id = item.get_index("id", -1);
    if (token.id < 0) item.fail("id", "missing field");
    token.content = item.get_string("content");
    token.special = item.get_bool("special", false);
    token.single_word = item.get_bool("single_word", false);
    token.lstrip = item.get_bool("lstrip", false);
    token.rstrip = item.get_bool("rstrip", false);
    token.normalized = item.get_bool("normalized", !token.special);
    out.push_back(std::move(token));
  }
  return out;
}

// A pipeline component of tokenizer.json ("normalizer", "decoder", ...); null when absent.
const io::json& component(const io::json& root, const char* key) {
  static const io::json null_value;
  return root.contains(key) ? root.at(key) : null_value;
}

// Does the component tree contain an object with "type": `type`?
bool uses_type(const io::json& node, const std::string& type) {
  if (node.is_object()) {
    const auto it = node.find("type");
    if (it != node.end() && it->is_string() && it->get_ref<const std::string&>() == type) return true;
    return std::any_of(node.begin(), node.end(), [&](const io::json& child) { return uses_type(child, type); });
  }
  if (node.is_array()) return std::any_of(node.begin(), node.end(), [&](const io::json& child) { return uses_type(child, type); });
  return false;
}

std::string classify(const io::json& root, const BpeModel& model) {
  if (uses_type(component(root, "pre_tokenizer"), "ByteLevel") || uses_type(component(root, "decoder"), "ByteLevel")) return "bpe-byte-level";
  if (model.options().byte_fallback || uses_type(component(root, "pre_tokenizer"), "Metaspace") ||
      uses_type(component(root, "normalizer"), "Prepend") || uses_type(component(root, "decoder"), "ByteFallback")) {
    return "bpe-sentencepiece";
  }
  return "bpe";
}

}  // namespace

std::unique_ptr<Backend> load_tokenizer_json(const std::string& path) {
  const io::json root = io::parse_json<io::json>(io::read_file(path), path);
  const io::JsonPath at(path);
  io::SortedJsonFields fields(root, at);
  io::SortedJsonFields model = fields.get_object("model");
  std::string type;
  if (model.has("type")) {
    type = model.get_string("type");
  } else if (model.has("merges")) {
    type = "BPE";  // older files leave the type out
  } else {
    model.fail("type", "missing field (only BPE models are supported)");
  }
  if (type != "BPE") model.fail("type", "unsupported model type '" + type + "' (supported: BPE)");

  auto tokenizer = std::make_unique<JsonTokenizer>();
  tokenizer->model_ = read_bpe_model(model);
  tokenizer->normalizer_ = make_normalizer(component(root, "normalizer"), at / "normalizer");
  tokenizer->pre_tokenizer_ = make_pre_tokenizer(component(root, "pre_tokenizer"), at / "pre_tokenizer");
  tokenizer->post_processor_ = make_post_processor(component(root, "post_processor"), at / "post_processor");
  tokenizer->decoder_ = make_decoder(component(root, "decoder"), at / "decoder");
  tokenizer->kind_ = classify(root, *tokenizer->model_);

  for (AddedToken token : read_added_tokens(fields)) {
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
