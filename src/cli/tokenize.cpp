// ranktune tokenize --tokenizer DIR --file TEXT_FILE [--add-special-tokens]

#include "commands.h"
#include "ranktune/io/file.h"
#include "ranktune/tokenizer/tokenizer.h"

#include <iostream>

namespace ranktune::cli {

void add_tokenize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Print the token ids of a text file on one line");
  struct Options {
    std::string tokenizer, file;
    bool add_special_tokens = false;
  };
  auto o = std::make_shared<Options>();
  cmd->add_option("--tokenizer", o->tokenizer, "directory or tokenizer.json / tokenizer.model")->required();
  cmd->add_option("--file", o->file, "UTF-8 text file; its whole content is encoded")->required();
  cmd->add_flag("--add-special-tokens", o->add_special_tokens, "add BOS/EOS as the tokenizer's config says");
  cmd->callback([o] {
    const auto tok = tokenizer::Tokenizer::from_pretrained(o->tokenizer);
    const auto ids = tok.encode(io::read_file(o->file), o->add_special_tokens);
    for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
    std::cout << std::endl;
  });
}

}  // namespace ranktune::cli
