// ranktune download org/name [--revision R] [--cache-dir DIR] — a model from the Hugging Face Hub
// into the local cache (huggingface_hub's layout), where `org/name` then resolves offline.

#include "commands.h"
#include "ranktune/io/hub_download.h"

#include <iostream>

namespace ranktune::cli {

void add_download_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("download", "Download a model from the Hugging Face Hub into the local cache");
  struct Options {
    std::string repo;
    io::HubDownloadOptions download;
  };
  auto o = std::make_shared<Options>();
  cmd->add_option("repo", o->repo, "repository, e.g. Qwen/Qwen2.5-0.5B-Instruct")->required();
  cmd->add_option("--revision", o->download.revision, "branch, tag or commit hash (default: main)");
  cmd->add_option("--cache-dir", o->download.cache_dir,
                  "cache directory (default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)");
  cmd->footer("The hub is $HF_ENDPOINT (default https://huggingface.co); $HF_TOKEN is sent for gated or private models.");
  cmd->callback([o] {
    o->download.log = [](const std::string& line) { std::cerr << line << std::endl; };
    std::cout << io::download_snapshot(o->repo, o->download) << std::endl;
  });
}

}  // namespace ranktune::cli
