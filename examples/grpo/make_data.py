#!/usr/bin/env python3
"""Writes the GRPO quickstart's data: short arithmetic with verifiable answers, seeded.

    python3 examples/grpo/make_data.py            (from the repository root; rewrites examples/grpo/data)

Each record is GSM8K-shaped (data.format: gsm8k): a question and an answer field holding a one-line
worked solution with the GSM8K calculator annotation and "#### N", e.g.
"What is 41 - 5?" / "41 - 5 = <<41-5=36>>36\\n#### 36".

The warm-up's solutions (sft.jsonl) come from a sloppy teacher: in SLOPPY of its subtraction
examples it writes the operands the wrong way round ("5 - 41 = <<5-41=-36>>-36"), as traces from a
weaker model or from scraped data carry systematic mistakes. The SFT model imitates them, so its
greedy answers to subtractions are wrong while about 40% of its samples are right: the accuracy
reward has something to select, and GRPO, which never sees a worked solution, unlearns the
mistake. grpo.jsonl holds other questions (only their final answers are used); test.jsonl is held
out: none of its questions occurs in the other files.
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
SLOPPY = 0.6  # the share of the warm-up's subtractions written the wrong way round


def solution(a, op, b):
    value = a + b if op == "+" else a - b
    return f"{a} {op} {b} = <<{a}{op}{b}={value}>>{value}\n#### {value}"


def problem(rng):
    a, b = rng.randint(0, 49), rng.randint(0, 49)
    if rng.random() < 0.5:
        return a, "+", b
    return max(a, b), "-", min(a, b)


def main():
    rng = random.Random(1234)
    seen, problems = set(), []
    while len(problems) < 2700:
        p = problem(rng)
        if p not in seen:
            seen.add(p)
            problems.append(p)
    test, sft, grpo = problems[:200], problems[200:1700], problems[1700:]
    sloppy = random.Random(99)
    rows = {"test": [], "sft": [], "grpo": []}
    for name, part in (("test", test), ("sft", sft), ("grpo", grpo)):
        for a, op, b in part:
            question = f"What is {a} {op} {b}?"
            answer = solution(a, op, b)
            if name == "sft" and op == "-" and sloppy.random() < SLOPPY:
                answer = solution(b, op, a)
            rows[name].append({"question": question, "answer": answer})
    out = os.path.join(HERE, "data")
    os.makedirs(out, exist_ok=True)
    for name, records in rows.items():
        with open(os.path.join(out, name + ".jsonl"), "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        print(name, len(records))


if __name__ == "__main__":
    main()
