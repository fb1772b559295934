#!/usr/bin/env bash
# Installs everything the project needs on Debian 12: the Debian packages
# below, then a project-local Python virtual environment (.venv/) with the
# pinned PyTorch wheel (LibTorch for the worker) and the test oracles
# (scripts/requirements.txt). Idempotent: re-running it installs nothing new.
# Needs root (or sudo) for the Debian packages.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git python3 zlib1g-dev
  # sanitizer and fuzz builds (scripts/sanitize.sh): clang with libFuzzer, ccache
  clang ccache
  # tests and benchmarks (promtool checks /metrics; headless Chromium draws the dashboard)
  googletest libgtest-dev libgmock-dev libbenchmark-dev prometheus chromium
  # the virtual environment that carries LibTorch and the Python oracles
  python3-venv
  # collectives and launch
  libopenmpi-dev openmpi-bin
  # transport, storage, logging
  libzmq3-dev cppzmq-dev librocksdb-dev libgoogle-glog-dev libgflags-dev
  # text, config, formats
  libutf8proc-dev libicu-dev libcli11-dev libyaml-cpp-dev nlohmann-json3-dev
  libcpp-httplib-dev libxxhash-dev libprotobuf-dev protobuf-compiler
  # a one-node Slurm cluster for the Slurm tests
  slurm-wlm munge
  # real text corpora used by the default job, tests and benchmarks
  linux-doc-6.1 bible-kjv-text dict-gcide fortunes
)

install_debian_packages() {
  local missing=()
  for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "[setup] all ${#PACKAGES[@]} Debian packages already installed"
    return
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "[setup] installing ${#missing[@]} Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# .venv/: PyTorch's CUDA-enabled wheel (LibTorch for the worker; it runs on
# CPUs too) and the tests' oracles and peers, at the versions pinned in
# scripts/requirements.txt. A stamp holding the requirements' hash skips the
# install when nothing changed. pip's cache (~/.cache/pip) keeps the wheels.
install_python_environment() {
  local venv="${BERT_VENV:-$PWD/.venv}"
  local requirements="scripts/requirements.txt"
  local stamp="$venv/.bert-requirements.sha256"
  local want
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "[setup] Python environment $venv is up to date"
    return
  fi
  if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating the Python environment $venv"
    python3 -m venv "$venv"
  fi
  echo "[setup] installing the pinned Python packages into $venv (first time: about 2 GiB)"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  "$venv/bin/python" -c 'import torch, transformers, tokenizers, safetensors, sklearn; print("[setup] torch", torch.__version__, "CUDA", torch.version.cuda, "transformers", transformers.__version__, "tokenizers", tokenizers.__version__)'
  echo "$want" > "$stamp"
}

cd "$(dirname "$0")/.."
install_debian_packages
install_python_environment
echo "[setup] done"
