"""Compares two run directories of `ranktune train`: the adapter tensors and the per-step training
losses (metrics.jsonl), each within a relative tolerance (0: bit-identical).
    compare_runs.py RUN_A RUN_B TOLERANCE
Reads safetensors by hand (numpy only), so it needs neither torch nor safetensors."""
import json
import struct
import sys

import numpy as np


def tensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    dtypes = {"F32": np.float32, "BF16": np.uint16, "F16": np.float16}
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        start, end = v["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + start:8 + n + end], dtype=dtypes[v["dtype"]]).astype(np.float64)
    return out


def losses(run):
    rows = [json.loads(line) for line in open(run + "/metrics.jsonl")]
    return {row["step"]: row["loss"] for row in rows if "loss" in row}


def relative(a, b):
    scale = max(np.abs(a).max(), np.abs(b).max(), 1e-30)
    return float(np.abs(a - b).max() / scale)


def main():
    a, b, tolerance = sys.argv[1], sys.argv[2], float(sys.argv[3])
    ta, tb = tensors(a + "/adapter_model.safetensors"), tensors(b + "/adapter_model.safetensors")
    problems = []
    if sorted(ta) != sorted(tb):
        problems.append("different tensor names")
    worst_tensor = max((relative(ta[k], tb[k]) for k in ta if k in tb), default=0.0)
    la, lb = losses(a), losses(b)
    if sorted(la) != sorted(lb) or not la:
        problems.append(f"logged steps differ: {sorted(la)} vs {sorted(lb)}")
    worst_loss = max((abs(la[s] - lb[s]) / max(abs(la[s]), 1e-30) for s in la if s in lb), default=0.0)
    print(f"{len(ta)} tensors, worst relative difference {worst_tensor:.3g}; {len(la)} steps, worst loss difference {worst_loss:.3g}")
    if worst_tensor > tolerance or worst_loss > tolerance:
        problems.append(f"above the tolerance {tolerance}")
    if problems:
        print("; ".join(problems))
        sys.exit(1)


if __name__ == "__main__":
    main()
