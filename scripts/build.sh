#!/usr/bin/env bash
# Configures and builds in ./build (Release, Ninja).
set -euo pipefail
cd "$(dirname "$0")/.."
launcher=()
# ccache, where installed, makes rebuilds in fresh clones cheap; it is optional.
# CCACHE_BASEDIR makes paths relative to the checkout, so clones share the cache.
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="$PWD"
fi
mkdir -p build
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" "${launcher[@]}" > build/configure.log 2>&1 \
  || { cat build/configure.log; exit 1; }
# The configure summary: which LibTorch, CUDA and NCCL were found.
grep -E '^-- (LibTorch|CUDA|NCCL)' build/configure.log || true
cmake --build build -j"${JOBS:-2}"
