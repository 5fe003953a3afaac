// The `ranktune` command-line tool: parses the top level and dispatches to the subcommands in
// src/cli/*.cpp. Errors in user input end with "error: ..." on stderr and exit code 1.

#include "commands.h"
#include "ranktune/core/error.h"
#include "ranktune/core/threads.h"
#include "ranktune/version.h"

#include <c10/util/Exception.h>

#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"ranktune — LoRA/DoRA fine-tuning for Hugging Face-format language models (C++/LibTorch)"};
  app.set_version_flag("--version", std::string("ranktune ") + RANKTUNE_VERSION);
  int threads = 0;
  app.add_option("--threads", threads, "intra-op threads (default: all cores)");
  app.require_subcommand(0, 1);
  app.footer("Run `ranktune <command> --help` for a command's options.");
  ranktune::cli::add_inspect_command(app);
  ranktune::cli::add_tokenize_command(app);
  ranktune::cli::add_generate_command(app);
  ranktune::cli::add_merge_command(app);
  ranktune::cli::add_train_command(app);
  ranktune::cli::add_grpo_command(app);
  ranktune::cli::add_eval_command(app);
  ranktune::cli::add_sample_command(app);
  ranktune::cli::add_config_docs_command(app);
  ranktune::cli::add_download_command(app);
  app.parse_complete_callback([&threads] { ranktune::configure_threads(threads); });
  try {
    app.parse(argc, argv);
    if (app.get_subcommands().empty()) std::cout << app.help();
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const ranktune::cli::ExitCode& e) {
    return e.code;
  } catch (const ranktune::Error& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
