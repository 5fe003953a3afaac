#include "ranktune/tokenizer/text_case.h"

#include "jinja_builtins.h"

namespace ranktune::tokenizer {

std::string lowercase(std::string_view text) { return jinja::map_case(std::string(text), jinja::to_lower); }

}  // namespace ranktune::tokenizer
