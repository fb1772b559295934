#!/usr/bin/env python3
"""Prints the compression study's table (scripts/compression_study.sh) as Markdown.

Usage: compression_table.py STUDY_DIR

Per row: parameters (from the safetensors header), model file size, test
macro-F1 (mean, and the spread over seeds), and from quantize_bench on one
thread: texts/s at batch 32 and latency at batch 1 (p50, p99). A speed
figure is that of the first seed's model of the row.
"""
import glob
import json
import os
import re
import statistics
import struct
import sys


def parameters(model_dir):
    for name in ("model.safetensors", "model.int8.safetensors"):
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(length))
            count = 0
            for key, entry in header.items():
                if key == "__metadata__" or key.endswith(("weight_scale", "input_scale", "input_zero_point")):
                    continue
                n = 1
                for d in entry["shape"]:
                    n *= d
                count += n
            return count, os.path.getsize(path)
    raise SystemExit(f"{model_dir}: no model.safetensors or model.int8.safetensors")


def macro_f1(model_dir):
    for name, key in (("metrics.json", "test"), ("eval_metrics.json", None)):
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            with open(path) as f:
                metrics = json.load(f)
            return (metrics[key] if key else metrics)["macro_f1"]
    raise SystemExit(f"{model_dir}: no metrics.json or eval_metrics.json")


def bench(study, model, row):
    """(texts/s, p50 ms, p99 ms) of `row` ("fp32", "int8 dynamic") in bench-MODEL.txt."""
    path = os.path.join(study, f"bench-{model}.txt")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in f:
            if line.startswith(row + " "):
                fields = line[len(row):].split()
                return float(fields[0]), float(fields[2]), float(fields[3])
    return None


def main():
    study = sys.argv[1]
    rows = [
        ("teacher: all-MiniLM-L6-v2 fine-tuned", "teacher", "teacher", "fp32"),
        ("teacher, int8 (dynamic)", "teacher-int8", "teacher", "int8 dynamic"),
        ("student: bert-tiny fine-tuned directly", "direct-seed*[0-9]", "distilled-seed1", "fp32"),
        ("student: bert-tiny distilled from the teacher (+3000 unlabelled texts)", "distilled-seed*[0-9]", "distilled-seed1",
         "fp32"),
        ("distilled, int8 (dynamic)", "distilled-seed*[0-9]-int8", "distilled-seed1", "int8 dynamic"),
        ("distilled, pruned: 1 of 4 heads, FFN 50%, 4 epochs recovery", "distilled-seed*[0-9]-pruned1",
         "distilled-seed1-pruned1", "fp32"),
        ("distilled, pruned: 2 of 4 heads, FFN 25%, 4 epochs recovery", "distilled-seed*[0-9]-pruned2",
         "distilled-seed1-pruned2", "fp32"),
    ]
    print("| model | parameters | file | test macro-F1 | seeds | texts/s (batch 32) | p50 ms (batch 1) | p99 ms (batch 1) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, pattern, bench_model, bench_row in rows:
        # "seed*[0-9]" is one seed number: not distilled-seed1-pruned1 for distilled-seed*[0-9].
        exact = re.compile(re.escape(pattern).replace(r"\*\[0\-9\]", r"\d+") + "$")
        dirs = sorted(d for d in glob.glob(os.path.join(study, pattern))
                      if os.path.isdir(d) and exact.match(os.path.basename(d)))
        if not dirs:
            print(f"| {label} | (not run) | | | | | | |")
            continue
        count, size = parameters(dirs[0])
        scores = [macro_f1(d) for d in dirs]
        spread = f" ± {statistics.pstdev(scores):.4f}" if len(scores) > 1 else ""
        speed = bench(study, bench_model, bench_row)
        speed_cells = f"{speed[0]:.1f} | {speed[1]:.2f} | {speed[2]:.2f}" if speed else " | | "
        print(f"| {label} | {count / 1e6:.2f}M | {size / 1e6:.1f} MB | {statistics.mean(scores):.4f}{spread} | "
              f"{len(scores)} | {speed_cells} |")


if __name__ == "__main__":
    main()
