#!/usr/bin/env bash
# The default job on a fresh Debian 12 machine: set up, build, then
#   1. learn a 30522-token WordPiece vocabulary from the Linux kernel
#      documentation (Debian's linux-doc-6.1, about 42 MB of text),
#   2. ingest that corpus into RocksDB with it (bertctl prepare),
#   3. print the corpus statistics,
#   4. pretrain bert-tiny on it for a few hundred steps in one process
#      (configs/runs/tiny.yaml; metrics in runs/tiny/metrics.jsonl).
# Results go to runs/default/. Re-running it reuses what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/build.sh

BERTCTL=build/bin/bertctl
RUN=runs/default
CORPUS=/usr/share/doc/linux-doc-6.1/Documentation
mkdir -p "$RUN"

if [ ! -s "$RUN/vocab.txt" ]; then
  "$BERTCTL" vocab --input "$CORPUS" --size 30522 --threads 2 --output "$RUN/vocab.txt"
fi
"$BERTCTL" prepare --input "$CORPUS" --vocab "$RUN/vocab.txt" --db "$RUN/corpus" --threads 2
"$BERTCTL" corpus stats --db "$RUN/corpus" --vocab "$RUN/vocab.txt"
# Data-parallel pretraining: the coordinator and 2 MPI workers, with checkpoints.
"$BERTCTL" pretrain --config configs/runs/tiny.yaml --workers 2
"$BERTCTL" status runs/tiny
echo "[demo] done: vocabulary $RUN/vocab.txt, corpus $RUN/corpus, bert-tiny run runs/tiny (checkpoints in runs/tiny/checkpoints)"
