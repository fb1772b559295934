#!/usr/bin/env bash
# Sanitizer and fuzz checks (issue 10).
#
#   scripts/sanitize.sh                 ASan+UBSan build in build-asan, then its
#                                       unit and integration tests (not slurm)
#   scripts/sanitize.sh --fuzz [SECS]   the above, then every libFuzzer target in
#                                       build-fuzz for SECS seconds each (default 20)
#   scripts/sanitize.sh --fuzz-only [SECS]   only the fuzz part
#   scripts/sanitize.sh --ci ...        CI's cut (scripts/test.sh): under ASan+UBSan
#                                       only the unit tests and the tools they run;
#                                       the integration tests (CLI end to end,
#                                       coordinator processes) are left to a full run
#   scripts/sanitize.sh --tsan          TSan build in build-tsan, then the
#                                       coordinator tests (the threaded ones)
#
# Only the torch-free parts are instrumented: common, datapipe, checkpoint,
# interop, finetune, coordinator, cli and their tests (BERT_BUILD_WORKER=OFF).
# LibTorch is a prebuilt, uninstrumented library and rebuilding it with
# sanitizers is out of reach here (hours); the worker's own code links it on
# every line, so it is left out rather than half-checked. The same holds for
# RocksDB, ZeroMQ, protobuf and glog: calls into them are checked at our side.
#
# Runtime options. They are exported, so the processes the tests spawn
# (bertctl, bert-coordinator, bert-fake-worker, all built instrumented) run
# with them too and fail the test on a finding: any ASan or UBSan report
# aborts the process, a leak at exit gives exit code 23. Suppressions, each
# with its reason, live in scripts/sanitize.supp (LSan) and scripts/tsan.supp.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

mode=asan
ci=0
fuzz_seconds=0
while [ $# -gt 0 ]; do
  case "$1" in
    --fuzz) fuzz_seconds=20; if [[ "${2:-}" =~ ^[0-9]+$ ]]; then fuzz_seconds=$2; shift; fi ;;
    --fuzz-only) mode=none; fuzz_seconds=20; if [[ "${2:-}" =~ ^[0-9]+$ ]]; then fuzz_seconds=$2; shift; fi ;;
    --tsan) mode=tsan ;;
    --ci) ci=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "sanitize.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

JOBS=${JOBS:-2}
CC_BIN=${SANITIZE_CC:-clang}
CXX_BIN=${SANITIZE_CXX:-clang++}
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="$ROOT"  # paths relative to the checkout: clones share the cache
fi
common_flags=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER="$CC_BIN" -DCMAKE_CXX_COMPILER="$CXX_BIN"
              -DBERT_BUILD_WORKER=OFF -DBERT_BUILD_BENCH=OFF "${launcher[@]}")

export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_init_order=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$ROOT/scripts/sanitize.supp:print_suppressions=0"
export TSAN_OPTIONS="suppressions=$ROOT/scripts/tsan.supp:halt_on_error=1:second_deadlock_stack=1"

seconds_since() { echo $(( $(date +%s) - $1 )); }

run_ctest() {  # dir, ctest args...
  local dir=$1; shift
  (cd "$dir" && ctest --output-on-failure -j"$JOBS" --timeout 900 "$@")
}

if [ "$mode" = asan ]; then
  start=$(date +%s)
  echo "[sanitize] ASan+UBSan build in build-asan ($CXX_BIN)"
  cmake -S . -B build-asan "${common_flags[@]}" -DBERT_SANITIZE=address,undefined >/dev/null
  if [ "$ci" = 1 ]; then
    # Unit test binaries only (tests/unit/*, no worker/); unbuilt integration
    # binaries show up in ctest as *_NOT_BUILT without a label, so -L unit skips them.
    unit_tests=$(ls tests/unit/*_test.cc tests/unit/*/*_test.cc | grep -v '/worker/' | xargs -n1 basename | sed 's/\.cc$//')
    # shellcheck disable=SC2086
    cmake --build build-asan -j"$JOBS" --target bertctl bert-coordinator bert-fake-worker $unit_tests
    echo "[sanitize] build: $(seconds_since "$start") s; unit tests under ASan+UBSan (--ci)"
    run_ctest build-asan -L unit -LE slurm
  else
    cmake --build build-asan -j"$JOBS"
    echo "[sanitize] build: $(seconds_since "$start") s; unit and integration tests under ASan+UBSan"
    run_ctest build-asan -L 'unit|integration' -LE slurm
  fi
  echo "[sanitize] ASan+UBSan done in $(seconds_since "$start") s"
fi

if [ "$mode" = tsan ]; then
  start=$(date +%s)
  echo "[sanitize] TSan build in build-tsan ($CXX_BIN)"
  cmake -S . -B build-tsan "${common_flags[@]}" -DBERT_SANITIZE=thread >/dev/null
  # Only the coordinator tests (tests/{unit,integration}/coordinator), run
  # binary by binary: ctest would count the unbuilt rest as failures.
  tsan_tests=$(ls tests/unit/coordinator/*_test.cc tests/integration/coordinator/*_test.cc | xargs -n1 basename | sed 's/\.cc$//')
  # shellcheck disable=SC2086
  cmake --build build-tsan -j"$JOBS" --target bert-coordinator bert-fake-worker bertctl $tsan_tests
  echo "[sanitize] build: $(seconds_since "$start") s; coordinator tests under TSan"
  for test in $tsan_tests; do
    echo "[sanitize] TSan: $test"
    (cd build-tsan && "tests/$test" --gtest_brief=1)
  done
  echo "[sanitize] TSan done in $(seconds_since "$start") s"
fi

if [ "$fuzz_seconds" -gt 0 ]; then
  start=$(date +%s)
  echo "[sanitize] libFuzzer targets in build-fuzz (clang)"
  cmake -S . -B build-fuzz "${common_flags[@]}" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
        -DBERT_BUILD_FUZZ=ON -DBERT_BUILD_TESTS=OFF >/dev/null
  cmake --build build-fuzz -j"$JOBS" --target bert_fuzzers
  echo "[sanitize] fuzz build: $(seconds_since "$start") s; ${fuzz_seconds} s per target"
  artifacts=$ROOT/build-fuzz/artifacts
  mkdir -p "$artifacts"
  failed=()
  for target in build-fuzz/fuzz/*_fuzz; do
    name=$(basename "$target" _fuzz)
    work=$(mktemp -d)
    cp "fuzz/corpus/$name"/* "$work"/
    # -timeout: an input slower than 25 s is a hang (generous: a loaded CI machine stalls); -rss_limit_mb: a bound on
    # what a hostile input may make us allocate.
    if "$target" -max_total_time="$fuzz_seconds" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
         -artifact_prefix="$artifacts/$name-" "$work" >"$work.log" 2>&1; then
      echo "[sanitize] fuzz $name: ok, $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work.log" | grep -o '[0-9]*$') runs, $(grep -o 'cov: [0-9]*' "$work.log" | tail -1)"
    else
      echo "[sanitize] fuzz $name: FAILED; the input is in $artifacts; log:" >&2
      tail -n 60 "$work.log" >&2
      failed+=("$name")
    fi
    rm -rf "$work" "$work.log"
  done
  echo "[sanitize] fuzzing done in $(seconds_since "$start") s"
  if [ ${#failed[@]} -gt 0 ]; then
    echo "[sanitize] fuzz targets that failed: ${failed[*]}" >&2
    exit 1
  fi
fi
