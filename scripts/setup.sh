#!/usr/bin/env bash
# Installs every Debian package the project needs. Idempotent: re-running it
# installs nothing new. Needs root (or sudo) on Debian 12.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git python3 zlib1g-dev
  # sanitizer and fuzz builds (scripts/sanitize.sh): clang with libFuzzer, ccache
  clang ccache
  # tests and benchmarks (promtool checks /metrics; headless Chromium draws the dashboard)
  googletest libgtest-dev libgmock-dev libbenchmark-dev prometheus chromium
  # PyTorch for the independent HuggingFace-BERT reference (tests/reference/hf_bert_ref.py)
  python3-torch python3-numpy
  # tensors and fast CPU math (without OpenBLAS LibTorch is ~30x slower)
  libtorch-dev libopenblas0-pthread
  # collectives and launch
  libopenmpi-dev openmpi-bin
  # transport, storage, logging
  libzmq3-dev cppzmq-dev librocksdb-dev libgoogle-glog-dev libgflags-dev
  # text, config, formats
  libutf8proc-dev libcli11-dev libyaml-cpp-dev nlohmann-json3-dev
  libcpp-httplib-dev libxxhash-dev libprotobuf-dev protobuf-compiler
  # a one-node Slurm cluster for the Slurm tests
  slurm-wlm munge
  # real text corpora used by the default job, tests and benchmarks
  linux-doc-6.1 bible-kjv-text dict-gcide fortunes
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "[setup] all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "[setup] installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "[setup] done"
