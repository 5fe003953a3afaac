// Must not compile: train is below eval (the trainer's evaluation is injected, train/evaluator.h).
#include "ranktune/eval/gsm8k_eval.h"
