#include "ranktune/tokenizer/tokenizer.h"

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/strings.h"
#include "ranktune/core/utf8.h"
#include "ranktune/io/hub_cache.h"
#include "backend.h"
#include "chat_templates.h"
#include "post_processors.h"
#include "tokenizer_config.h"
#include "utf8.h"

#include <filesystem>

namespace ranktune::tokenizer {

namespace fs = std::filesystem;

struct Tokenizer::Impl {
  std::unique_ptr<Backend> backend;
  std::string source;
  std::optional<int64_t> bos, eos, pad;
  std::unique_ptr<PostProcessor> config_processor;  // from add_bos_token / add_eos_token
  bool clean_up_spaces = false;
  ChatTemplates chat;
};

namespace {

// The id of a role: the config's token when the config names the role, else the model's own.
std::optional<int64_t> resolve_role(const Backend& backend, const ConfigSpecialToken& configured, SpecialRole role,
                                    const std::string& config_path, const char* key) {
  if (!configured.specified) return backend.role_id(role);
  if (!configured.token) return std::nullopt;
  const auto id = backend.token_to_id(configured.token->content);
  if (!id) {
    log_warning(c10::str(config_path, ": ", key, " '", configured.token->content,
                         "' is not in the vocabulary; ignoring it"));
  }
  return id;
}

}  // namespace

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::from_pretrained(const std::string& name_or_path) {
  const std::string path = io::resolve_pretrained(name_or_path);
  std::string file = path;
  std::string config_path;
  if (fs::is_directory(path)) {
    const fs::path dir(path);
    if (fs::exists(dir / "tokenizer.json")) {
      file = (dir / "tokenizer.json").string();
    } else if (fs::exists(dir / "tokenizer.model")) {
      file = (dir / "tokenizer.model").string();
    } else {
      throw Error("no tokenizer.json or tokenizer.model in this directory", ErrorContext{path, "", -1});
    }
  } else if (!fs::exists(path)) {
    throw Error("no such file or directory", ErrorContext{path, "", -1});
  }
  const fs::path sibling_config = fs::path(file).parent_path() / "tokenizer_config.json";
  if (fs::exists(sibling_config)) config_path = sibling_config.string();

  auto impl = std::make_shared<Impl>();
  impl->source = file;
  impl->backend = ends_with(file, ".model") ? load_sentencepiece_model(file) : load_tokenizer_json(file);
  Backend& backend = *impl->backend;

  const fs::path jinja_file = fs::path(file).parent_path() / "chat_template.jinja";
  const std::string jinja_path = fs::exists(jinja_file) ? jinja_file.string() : "";

  if (config_path.empty()) {
    if (!jinja_path.empty()) impl->chat = ChatTemplates(TokenizerConfig{}, jinja_path);
    impl->bos = backend.role_id(SpecialRole::bos);
    impl->eos = backend.role_id(SpecialRole::eos);
    impl->pad = backend.role_id(SpecialRole::pad);
    return Tokenizer(std::move(impl));
  }

  const TokenizerConfig config = read_tokenizer_config(config_path);
  // transformers makes every special token of the config an added special token.
  std::vector<AddedToken> specials = config.additional_special_tokens;
  for (const auto* role : {&config.bos, &config.eos, &config.unk, &config.pad}) {
    if (role->token) specials.push_back(*role->token);
  }
  for (const AddedToken& token : specials) {
    if (!backend.register_special_token(token)) {
      log_warning(c10::str(config_path, ": special token '", token.content, "' is not in the vocabulary of ", file,
                           "; ignoring it"));
    }
  }
  impl->bos = resolve_role(backend, config.bos, SpecialRole::bos, config_path, "bos_token");
  impl->eos = resolve_role(backend, config.eos, SpecialRole::eos, config_path, "eos_token");
  impl->pad = resolve_role(backend, config.pad, SpecialRole::pad, config_path, "pad_token");
  if (config.add_bos_token || config.add_eos_token) {
    // LlamaTokenizer's defaults for the one not given: add BOS, not EOS.
    std::vector<int64_t> prefix, suffix;
    if (config.add_bos_token.value_or(true) && impl->bos) prefix.push_back(*impl->bos);
    if (config.add_eos_token.value_or(false) && impl->eos) suffix.push_back(*impl->eos);
    impl->config_processor = std::make_unique<AffixProcessor>(std::move(prefix), std::move(suffix));
  }
  impl->clean_up_spaces = config.clean_up_tokenization_spaces;
  impl->chat = ChatTemplates(config, jinja_path);
  return Tokenizer(std::move(impl));
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  const size_t invalid = find_invalid_utf8(text);
  RANKTUNE_CHECK(invalid == std::string::npos, "cannot encode text that is not valid UTF-8 (byte ", invalid, ")");
  std::vector<int64_t> ids = impl_->backend->encode(text);
  if (add_special_tokens) {
    if (impl_->config_processor != nullptr) {
      impl_->config_processor->process(ids);
    } else {
      impl_->backend->add_special_tokens(ids);
    }
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::string text;
  if (skip_special_tokens) {
    std::vector<int64_t> kept;
    kept.reserve(ids.size());
    for (int64_t id : ids) {
      if (!impl_->backend->is_special(id)) kept.push_back(id);
    }
    text = impl_->backend->decode(kept);
  } else {
    text = impl_->backend->decode(ids);
  }
  return impl_->clean_up_spaces ? clean_up_tokenization(std::move(text)) : text;
}

int64_t Tokenizer::vocab_size() const { return impl_->backend->vocab_size(); }
std::optional<int64_t> Tokenizer::bos_token_id() const { return impl_->bos; }
std::optional<int64_t> Tokenizer::eos_token_id() const { return impl_->eos; }
std::optional<int64_t> Tokenizer::pad_token_id() const { return impl_->pad; }

std::optional<int64_t> Tokenizer::token_to_id(const std::string& token) const {
  return impl_->backend->token_to_id(token);
}

std::string Tokenizer::id_to_token(int64_t id) const {
  auto token = impl_->backend->id_to_token(id);
  RANKTUNE_CHECK_CTX(token.has_value(), (ErrorContext{impl_->source, "", -1}), "no token has id ", id,
                     " (vocabulary size ", vocab_size(), ")");
  return std::move(*token);
}

std::vector<std::string> Tokenizer::chat_template_names() const { return impl_->chat.names(); }

std::string Tokenizer::chat_template(const std::string& name_or_template, bool with_tools) const {
  return impl_->chat.select(name_or_template, with_tools);
}

std::string Tokenizer::apply_chat_template(const std::string& conversation_json,
                                           const ChatTemplateOptions& options) const {
  return impl_->chat.apply(conversation_json, options);
}

std::string Tokenizer::apply_chat_template(const std::vector<ChatMessage>& conversation,
                                           const ChatTemplateOptions& options) const {
  return impl_->chat.apply(conversation, options);
}

bool Tokenizer::is_special(int64_t id) const { return impl_->backend->is_special(id); }
std::string Tokenizer::kind() const { return impl_->backend->kind(); }
const std::string& Tokenizer::source() const { return impl_->source; }

}  // namespace ranktune::tokenizer
