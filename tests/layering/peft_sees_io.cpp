// Must compile: peft includes io, a layer below it.
#include "ranktune/io/file.h"
