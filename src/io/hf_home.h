#pragma once
// huggingface_hub's HF_HOME: $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.
// The hub cache (hub/) and the token file (token) live there.

#include <string>

namespace ranktune::io {

std::string hf_home();

}  // namespace ranktune::io
