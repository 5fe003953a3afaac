#!/usr/bin/env python3
"""Writes the GRPO quickstart's data: short arithmetic with verifiable answers, seeded.

    python3 examples/grpo/make_data.py            (from the repository root; rewrites examples/grpo/data)

Each record is GSM8K-shaped (data.format: gsm8k): a question and an answer field holding a one-line
worked solution with the GSM8K calculator annotation and "#### N". The SFT warm-up learns the
format from sft.jsonl; GRPO then learns from the rewards on the questions of grpo.jsonl (their
solutions are not used, only the final answers); test.jsonl is held out: no question of it occurs
in the other files.
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def problem(rng):
    a, b = rng.randint(0, 49), rng.randint(0, 49)
    if rng.random() < 0.5:
        return f"What is {a} + {b}?", f"{a} + {b} = <<{a}+{b}={a + b}>>{a + b}\n#### {a + b}"
    a, b = max(a, b), min(a, b)
    return f"What is {a} - {b}?", f"{a} - {b} = <<{a}-{b}={a - b}>>{a - b}\n#### {a - b}"


def main():
    rng = random.Random(1234)
    seen, records = set(), []
    while len(records) < 2300:
        q, a = problem(rng)
        if q in seen:
            continue
        seen.add(q)
        records.append({"question": q, "answer": a})
    test, sft, grpo = records[:100], records[100:400], records[400:]
    out = os.path.join(HERE, "data")
    os.makedirs(out, exist_ok=True)
    for name, rows in (("test", test), ("sft", sft), ("grpo", grpo)):
        with open(os.path.join(out, name + ".jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        print(name, len(rows))


if __name__ == "__main__":
    main()
