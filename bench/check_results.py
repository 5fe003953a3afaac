#!/usr/bin/python3
"""Reads benchmark JSON lines on stdin and fails unless every line is a sane result: the smoke
check of the test suite (it asserts that the benchmarks run, not how fast)."""
import json
import math
import sys

rows = [json.loads(line) for line in sys.stdin if line.strip()]
if not rows:
    sys.exit("no benchmark output")
for row in rows:
    if row["bench"] == "paired":  # a ratio of step times, no throughput of its own
        ratio = row.get("median_ratio")
        if not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio <= 0:
            sys.exit(f"{row['impl']} paired {row['method']}: bad median_ratio: {ratio}")
        print(f"ok {row['impl']:8} {row['bench']:6} {row['method']:14} ratio {ratio:.3f}")
        continue
    for key in ("tokens_per_s", "peak_rss_mb"):
        value = row.get(key)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            sys.exit(f"{row.get('impl')} {row.get('bench')} {row.get('method')}: bad {key}: {value}")
    if row["bench"] == "train" and not math.isfinite(row.get("loss", float("nan"))):
        sys.exit(f"{row['impl']} {row['method']}: non-finite loss")
    if row["bench"].startswith("decode") and row["impl"] == "ranktune" and not row.get("aten_calls_per_step", 0) > 0:
        sys.exit(f"ranktune {row['bench']} {row['method']}: no ATen calls counted")
    if row["bench"] in ("profile", "decode") and "operators" in row and not row["operators"].get("top_operators"):
        sys.exit(f"{row['impl']} {row['bench']} {row['method']}: no operators recorded")
    if row["bench"] == "profile" and not row.get("operators", {}).get("top_operators"):
        sys.exit(f"{row['impl']} profile {row['method']}: no operators recorded")
    print(f"ok {row['impl']:8} {row['bench']:6} {row['method']:14} {row['tokens_per_s']:10.1f} tok/s {row['peak_rss_mb']:8.0f} MB")
