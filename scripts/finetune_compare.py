#!/usr/bin/env python3
"""Prints the test metrics of fine-tuned models side by side, per seed and
averaged: the demo's "pretrained vs. from scratch" table.

Usage: finetune_compare.py --column NAME=DIR_GLOB [--column NAME=DIR_GLOB ...]
Each DIR is a `bertctl finetune` output directory (its metrics.json); the
seed comes from metrics.json. Exits 1 when a directory has no metrics.json,
which means its fine-tuning did not finish.
"""
import argparse
import glob
import json
import os
import sys


def load(pattern):
    runs = {}
    for directory in sorted(glob.glob(pattern)):
        path = os.path.join(directory, "metrics.json")
        if not os.path.exists(path):
            sys.exit(f"{path}: missing (did the fine-tuning finish?)")
        with open(path) as f:
            metrics = json.load(f)
        if "test" not in metrics:
            sys.exit(f"{path}: no test metrics (run bertctl finetune with --test)")
        runs[metrics["seed"]] = metrics
    if not runs:
        sys.exit(f"{pattern}: no fine-tuned models")
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--column", action="append", required=True, help="NAME=DIR_GLOB")
    args = parser.parse_args()
    columns = []
    for spec in args.column:
        name, _, pattern = spec.partition("=")
        if not pattern:
            sys.exit(f"--column {spec}: expected NAME=DIR_GLOB")
        columns.append((name, load(pattern)))
    seeds = sorted(set().union(*(runs.keys() for _, runs in columns)))
    header = f"{'seed':>6}" + "".join(f"  {name + ' macro-F1':>22} {'accuracy':>9}" for name, _ in columns)
    print(header)
    print("-" * len(header))
    means = []
    for seed in seeds:
        row = f"{seed:>6}"
        for _, runs in columns:
            test = runs.get(seed, {}).get("test")
            row += f"  {test['macro_f1']:>22.4f} {test['accuracy']:>9.4f}" if test else f"  {'-':>22} {'-':>9}"
        print(row)
    row = f"{'mean':>6}"
    for _, runs in columns:
        f1 = [r["test"]["macro_f1"] for r in runs.values()]
        acc = [r["test"]["accuracy"] for r in runs.values()]
        means.append(sum(f1) / len(f1))
        row += f"  {sum(f1) / len(f1):>22.4f} {sum(acc) / len(acc):>9.4f}"
    print("-" * len(header))
    print(row)
    if len(columns) == 2:
        (a, _), (b, _) = columns
        delta = means[0] - means[1]
        verdict = "beats" if delta > 0 else "does NOT beat"
        print(f"\n{a} {verdict} {b} on mean test macro-F1 by {delta:+.4f} over {len(seeds)} seed(s)")


if __name__ == "__main__":
    main()
