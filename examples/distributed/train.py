"""ranktune's Python Trainer as a torchrun worker: every worker runs this script, the Trainer joins
the group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, its agent's store) and
trains its share of each global batch; rank 0 writes the run (docs/distributed.md).

    torchrun --nproc-per-node 2 examples/distributed/train.py examples/gsm8k/quickstart.yaml train.batch_size=4
    (Debian: /usr/bin/python3 -m torch.distributed.run --nproc-per-node 2 examples/distributed/train.py ...)
Without torchrun it is an ordinary one-process run."""
import os
import sys

import ranktune


def main(recipe, *overrides):
    args = ranktune.TrainingArguments.from_yaml(recipe, overrides=list(overrides))
    trainer = ranktune.Trainer(args=args)
    result = trainer.train()
    if os.environ.get("RANK", "0") == "0":
        print(f"status: {result.status}, steps: {result.global_step}, loss: {result.training_loss:.6f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
