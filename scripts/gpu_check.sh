#!/usr/bin/env bash
# The GPU check: one unattended run on a machine with an NVIDIA GPU (an
# H200 here), in under 8 minutes. That machine has PyTorch 2.11 with CUDA 13
# and `transformers` in its own Python, but none of the Debian libraries,
# so the binaries and their libraries come prepared:
#   here:   bash scripts/build.sh && bash scripts/gpu_pack.sh   (-> build/gpu_carry)
#   there:  bash scripts/gpu_check.sh                            (carry build/gpu_carry)
# Steps (each logged under $OUT, default /tmp/gpu-check; a table last):
#   1. the machine: GPU, driver, its torch against the one built with;
#   2. the carried binaries load (no library missing);
#   3. the device unit tests (train.device on a machine with a GPU);
#   4. fp32 on the GPU (TF32 off, dropout 0) against the CPU from the same
#      initialisation, 3 steps: loss and gradient norm within 1e-4 relative;
#   5. bert-base and bert-large, seq 128, bf16: samples/s and MFU against the
#      bf16 GEMM peak the worker measures on the GPU;
#   6. the same shapes in PyTorch eager bf16 (transformers' BertForPreTraining,
#      bench/worker/train_step_peer.py): samples/s, and ours / eager;
#   7. checkpoints from the device and a 2-worker run need Open MPI's launcher
#      and the coordinator's libraries there; said plainly when absent.
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=${BERT_GPU_CARRY:-build/gpu_carry}
OUT=${OUT:-/tmp/gpu-check}
PY=${BERT_GPU_PYTHON:-python3}
WORK="$OUT/work"
mkdir -p "$WORK"
declare -a ROWS=()
row() { ROWS+=("$(printf '%-44s %s' "$1" "$2")"); echo "[gpu-check] $1: $2"; }
finish() {
  echo
  echo "== GPU check summary (logs in $OUT) =="
  printf '%s\n' "${ROWS[@]}" | tee "$OUT/summary.txt"
  exit "${1:-0}"
}

# 1. The machine.
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/nvidia-smi.txt" 2>&1
row "GPU" "$(head -1 "$OUT/nvidia-smi.txt")"
TORCH_INFO=$("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "cxx11_abi", torch._C._GLIBCXX_USE_CXX11_ABI, "gpus", torch.cuda.device_count())' 2>&1)
row "torch there" "$TORCH_INFO"
row "built with" "$(grep '^torch' "$CARRY/build-info.txt" 2>/dev/null || echo 'no build-info.txt: run scripts/gpu_pack.sh')"
[ -x "$CARRY/bin/bert-worker" ] || { row "carried binaries" "MISSING ($CARRY/bin/bert-worker)"; finish 1; }

# 2. Libraries: the carried ones, then torch's, CUDA's and NCCL's from that Python.
SITE=$("$PY" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
NVLIBS=$(ls -d "$SITE"/nvidia/*/lib 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="$PWD/$CARRY/lib:$SITE/torch/lib:${NVLIBS}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
missing=$(ldd "$CARRY/bin/bert-worker" "$CARRY/bin/device_test" | grep "not found" | sort -u)
if [ -n "$missing" ]; then
  row "libraries" "MISSING: $(echo "$missing" | awk '{print $1}' | tr '\n' ' ')"
  finish 1
fi
row "libraries" "all found"
WORKER="$CARRY/bin/bert-worker"

# 3. Device unit tests.
if timeout 60 "$CARRY/bin/device_test" > "$OUT/device_test.log" 2>&1; then
  row "device unit tests" "passed ($(grep -c '^\[       OK' "$OUT/device_test.log") tests)"
else
  row "device unit tests" "FAILED (device_test.log)"
fi

# A run config: $1 name, $2 model json, $3 batch, $4 steps, $5 seq, $6 extra train keys.
run_config() {
  cat > "$WORK/$1.yaml" <<YAML
name: $1
run_dir: $WORK/$1
model: $2
data:
  db: [$PWD/$CARRY/corpus]
  max_seq_len: $5
  max_predictions: $(( $5 / 6 ))
train:
  global_batch_size: $3
  steps: $4
  lr: 0.0001
  warmup_steps: 1
  intra_op_threads: 4
$6
log:
  every_steps: 1
checkpoint:
  every_steps: 0
YAML
  echo "$WORK/$1.yaml"
}

# 4. fp32 GPU against CPU, same initialisation, no dropout, TF32 off.
"$PY" - "$PWD/configs/models/bert-tiny.json" "$WORK/tiny-nodrop.json" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["hidden_dropout_prob"] = c["attention_probs_dropout_prob"] = 0.0
json.dump(c, open(sys.argv[2], "w"))
PYEOF
for device in cpu cuda; do
  cfg=$(run_config "fp32-$device" "$WORK/tiny-nodrop.json" 16 3 128 "  device: $device
  tf32: false")
  timeout 120 "$WORKER" --local --config "$cfg" > "$OUT/fp32-$device.log" 2>&1 || echo "exit $?" >> "$OUT/fp32-$device.log"
done
parity=$("$PY" - "$WORK/fp32-cpu/metrics.jsonl" "$WORK/fp32-cuda/metrics.jsonl" <<'PYEOF' 2>&1
import json, sys
try:
    a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
except OSError as e:
    print("FAILED (%s)" % e); sys.exit()
if len(a) != 3 or len(b) != 3:
    print("FAILED (%d and %d steps logged)" % (len(a), len(b))); sys.exit()
worst = max(abs(x[k] - y[k]) / max(abs(x[k]), 1e-12) for x, y in zip(a, b) for k in ("loss", "grad_norm"))
print("%s (max relative difference %.2e over 3 steps of loss and gradient norm)" % ("passed" if worst < 1e-4 else "FAILED", worst))
PYEOF
)
row "fp32 GPU vs CPU" "$parity"

# 5 and 6. bert-base and bert-large at seq 128 in bf16: ours, then eager.
for model in base:64 large:32; do
  name=${model%%:*} batch=${model##*:}
  cfg=$(run_config "bf16-$name" "$PWD/configs/models/bert-$name.json" "$batch" 40 128 "  device: cuda
  precision: bf16")
  timeout 240 "$WORKER" --local --config "$cfg" > "$OUT/bf16-$name.log" 2>&1 || echo "exit $?" >> "$OUT/bf16-$name.log"
  ours=$("$PY" - "$WORK/bf16-$name/metrics.jsonl" <<'PYEOF' 2>&1
import json, sys, statistics
try:
    r = [json.loads(l) for l in open(sys.argv[1])][10:]  # after warm-up
    print("%.1f %.1f %.1f" % (statistics.median(x["samples_per_s"] for x in r), 100 * statistics.median(x["mfu"] for x in r),
                              100 * statistics.median(x["data_wait_fraction"] for x in r)))
except Exception as e:
    print("FAILED", e)
PYEOF
)
  peak=$(grep -o "bf16 GEMM peak [0-9.e+]* GFLOP/s" "$OUT/bf16-$name.log" | head -1)
  eager=$(timeout 180 "$PY" bench/worker/train_step_peer.py --config "configs/models/bert-$name.json" --batch "$batch" \
            --seq 128 --masked 21 --threads 4 --steps 10 --device cuda --bf16 2> "$OUT/eager-$name.log" | tail -1)
  set -- $ours
  if [ "${1:-FAILED}" = FAILED ]; then
    row "bert-$name bf16 b$batch s128 (ours)" "FAILED (bf16-$name.log: $(tail -1 "$OUT/bf16-$name.log"))"
  else
    row "bert-$name bf16 b$batch s128 (ours)" "$1 samples/s, MFU $2% vs the measured ${peak:-peak ?}, data wait $3%"
  fi
  if [ -n "$eager" ]; then
    eager_sps=${eager##* }
    row "bert-$name bf16 b$batch s128 (eager)" "$eager_sps samples/s; ours/eager $("$PY" -c "print('%.2f' % (float('${1:-0}') / $eager_sps))" 2>/dev/null || echo ?)x"
  else
    row "bert-$name bf16 b$batch s128 (eager)" "FAILED (eager-$name.log)"
  fi
done

# 7. What needs Open MPI's launcher and the coordinator there.
if command -v mpirun > /dev/null; then
  row "checkpoint on the device, 2 workers" "mpirun found, but bertctl and bert-coordinator are not carried: not run"
else
  row "checkpoint on the device, 2 workers" "not run: no mpirun on this machine (one GPU: NCCL needs 2 GPUs for 2 ranks)"
fi
finish 0
