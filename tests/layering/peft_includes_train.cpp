// Must not compile: train is above peft.
#include "ranktune/train/trainer.h"
