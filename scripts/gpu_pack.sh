#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh needs on a GPU machine that has PyTorch
# (2.11, CUDA 13) but none of the Debian libraries: run here after
# scripts/build.sh; it writes build/gpu_carry/ (about 45 MB):
#   bin/   bert-worker and the device unit test, built here against the
#          venv's LibTorch (the GPU machine supplies its own libtorch*, CUDA
#          and NCCL libraries at run time, through LD_LIBRARY_PATH)
#   lib/   every other shared library they load that is not glibc's or
#          libstdc++'s (glog, gflags, protobuf, ZeroMQ, yaml-cpp, Open MPI, ...)
#   corpus/ a small corpus prepared with the uncased BERT vocabulary (the
#          bert-base and bert-large runs read it)
#   build-info.txt  the LibTorch, CUDA and compiler the binaries were built with
# Then: the device tool's `run` with carry ["build/gpu_carry"] and
#   bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=build/gpu_carry
rm -rf "$CARRY"
mkdir -p "$CARRY/bin" "$CARRY/lib"
cp build/bin/bert-worker build/tests/device_test "$CARRY/bin/"
# Libraries the GPU machine has (glibc, the C++ runtime) or brings with its torch wheel.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libresolv\.|libutil\.|libgcc_s|libstdc\+\+|libtorch|libc10|libcu|libnv|libnccl|libgomp|libshm|libcaffe2)'
for binary in "$CARRY"/bin/*; do
  ldd "$binary" | awk '$3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  if [[ "$name" =~ $skip ]]; then continue; fi
  cp -L "$path" "$CARRY/lib/$name"
done
# About 2 MB of real English for the GPU runs (the uncased BERT vocabulary fits bert-base and bert-large).
build/bin/bertctl prepare --input /usr/share/doc/linux-doc-6.1/Documentation/admin-guide \
  --vocab ../shared/vocab/bert-base-uncased-vocab.txt --db "$CARRY/corpus" --threads 2 > "$CARRY/prepare.log" 2>&1
{
  echo "built: $(date -u +%FT%TZ) on $(uname -m)"
  .venv/bin/python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11_abi", torch._C._GLIBCXX_USE_CXX11_ABI)'
  grep -E "LibTorch:|CUDA:|NCCL:" build/configure.log 2>/dev/null || true
  c++ --version | head -1
} > "$CARRY/build-info.txt"
du -sh "$CARRY"
cat "$CARRY/build-info.txt"
