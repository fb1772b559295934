#!/usr/bin/env bash
# Runs every benchmark with --smoke (tiny inputs, seconds): proves they run.
# Real figures come from running them without --smoke (see README).
set -euo pipefail
build="${1:-build}"
for bench in "$build"/bench/*_bench; do
  [ -x "$bench" ] || continue
  echo "[bench-smoke] $(basename "$bench")"
  "$bench" --smoke
done
