#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds everything and runs all tests
# (unit + integration through CTest) and a short smoke of the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/build.sh

echo "[test] benchmark smoke"
bash scripts/bench_smoke.sh build

echo "[test] local Slurm cluster (for the slurm tests)"
bash scripts/slurm_local.sh start

echo "[test] unit and integration tests"
(cd build && ctest --output-on-failure -j2 --timeout 1200)

# Sanitizers and fuzzing (scripts/sanitize.sh): the torch-free code with its
# unit and integration tests under ASan+UBSan, then each libFuzzer target for
# 15 s. BERT_SANITIZE_CHECK=0 skips it.
if [ "${BERT_SANITIZE_CHECK:-1}" != 0 ]; then
  echo "[test] sanitizers (ASan+UBSan tests) and fuzz targets"
  bash scripts/sanitize.sh --fuzz 15
fi
