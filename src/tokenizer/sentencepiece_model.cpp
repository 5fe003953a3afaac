// tokenizer.model: a SentencePiece model, encoded and decoded by libsentencepiece itself (so
// its normalization, e.g. removing extra whitespace, applies exactly). Control and unknown
// pieces ("<s>", "</s>", "<unk>") written in the text are cut out first and become their ids,
// as Hugging Face's LlamaTokenizer does with its special tokens.

#include "ranktune/core/error.h"
#include "backend.h"
#include "sentencepiece_library.h"

#include <filesystem>

namespace ranktune::tokenizer {

namespace {

constexpr const char* kSpaceMarker = "\xE2\x96\x81";  // "▁"

class SentencePieceModel : public Backend {
 public:
  explicit SentencePieceModel(const std::string& path)
      : library_(SentencePieceLibrary::get()), processor_(library_.new_processor()) {
    const std::string error = library_.check([&] { return processor_->Load(path); });
    if (!error.empty()) throw Error("cannot load the SentencePiece model: " + error, ErrorContext{path, "", -1});
    for (int id = 0; id < processor_->GetPieceSize(); ++id) {
      if (processor_->IsControl(id) || processor_->IsUnknown(id)) {
        AddedToken token;
        token.id = id;
        token.content = processor_->IdToPiece(id);
        token.normalized = false;
        token.special = true;
        specials_.add(token);
      }
    }
    specials_.build(nullptr);
  }

  std::string kind() const override { return "sentencepiece-model"; }

  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> ids;
    std::vector<int> piece_ids;
    for (const Segment& segment : specials_.split(text, nullptr)) {
      if (segment.token_id >= 0) {
        ids.push_back(segment.token_id);
        continue;
      }
      piece_ids.clear();
      const std::string error = library_.check([&] { return processor_->Encode(segment.piece.text, &piece_ids); });
      if (!error.empty()) throw Error("SentencePiece could not encode the text: " + error);
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    }
    return ids;
  }

  void add_special_tokens(std::vector<int64_t>& ids) const override {
    if (processor_->bos_id() >= 0) ids.insert(ids.begin(), processor_->bos_id());
  }

  // Runs of ordinary pieces are decoded by SentencePiece; special pieces are written as their
  // text. A run after other text keeps the space its first "▁" stands for.
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string out;
    std::vector<int> run;
    const auto flush = [&] {
      if (run.empty()) return;
      std::string text;
      const std::string error = library_.check([&] { return processor_->Decode(run, &text); });
      if (!error.empty()) throw Error("SentencePiece could not decode the ids: " + error);
      if (!out.empty() && processor_->IdToPiece(run[0]).rfind(kSpaceMarker, 0) == 0 &&
          (text.empty() || text[0] != ' ')) {
        out += ' ';
      }
      out += text;
      run.clear();
    };
    for (int64_t id : ids) {
      if (id < 0 || id >= processor_->GetPieceSize()) continue;
      if (const AddedToken* special = specials_.find(id)) {
        flush();
        out += special->content;
      } else {
        run.push_back(static_cast<int>(id));
      }
    }
    flush();
    return out;
  }

  int64_t vocab_size() const override { return processor_->GetPieceSize(); }

  std::optional<int64_t> token_to_id(const std::string& token) const override {
    const int id = processor_->PieceToId(token);  // unk_id() when absent
    if (id < 0 || processor_->IdToPiece(id) != token) return std::nullopt;
    return id;
  }

  std::optional<std::string> id_to_token(int64_t id) const override {
    if (id < 0 || id >= processor_->GetPieceSize()) return std::nullopt;
    return processor_->IdToPiece(static_cast<int>(id));
  }

  bool is_special(int64_t id) const override { return specials_.find(id) != nullptr; }

  std::optional<int64_t> role_id(SpecialRole role) const override {
    int id = -1;
    switch (role) {
      case SpecialRole::bos: id = processor_->bos_id(); break;
      case SpecialRole::eos: id = processor_->eos_id(); break;
      case SpecialRole::pad: id = processor_->pad_id(); break;
      case SpecialRole::unk: id = processor_->unk_id(); break;
    }
    if (id < 0) return std::nullopt;
    return id;
  }

  bool register_special_token(const AddedToken& token) override {
    if (specials_.find(token.content) != nullptr) return true;
    const auto id = token_to_id(token.content);
    if (!id) return false;
    AddedToken special = token;
    special.id = *id;
    special.special = true;
    special.normalized = false;  // matched in the raw text: SentencePiece normalizes internally
    specials_.add(special);
    specials_.build(nullptr);
    return true;
  }

 private:
  const SentencePieceLibrary& library_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  AddedVocabulary specials_;
};

}  // namespace

std::unique_ptr<Backend> load_sentencepiece_model(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw Error("no such file", ErrorContext{path, "", -1});
  return std::make_unique<SentencePieceModel>(path);
}

}  // namespace ranktune::tokenizer
