// Must not compile: src/tokenizer/pattern.h is private to the tokenizer layer.
#include "tokenizer/pattern.h"
