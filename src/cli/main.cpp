// The `ranktune` command-line tool. Subcommands live in one file each and register themselves
// here; this file only parses the top level.

#include "ranktune/core/error.h"
#include "ranktune/core/threads.h"
#include "ranktune/version.h"

#include <CLI/CLI.hpp>

#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"ranktune — LoRA/DoRA fine-tuning for Hugging Face-format language models (C++/LibTorch)"};
  app.set_version_flag("--version", std::string("ranktune ") + RANKTUNE_VERSION);
  int threads = 0;
  app.add_option("--threads", threads, "intra-op threads (default: all cores)");
  app.require_subcommand(0, 1);
  app.footer("Subcommands arrive with later releases: train, eval, generate, merge, inspect, tokenize.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    ranktune::configure_threads(threads);
    if (app.get_subcommands().empty()) {
      std::cout << app.help();
      return 0;
    }
  } catch (const ranktune::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
