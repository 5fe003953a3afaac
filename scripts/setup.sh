#!/usr/bin/env bash
# Installs the Debian packages ranktune needs (skipping what is installed), then configures and
# builds a Release tree in build/ with ccache and one job per core.
#   ./scripts/setup.sh            install + configure + build
#   ./scripts/setup.sh --sanitizers  also install clang and libFuzzer (scripts/sanitize.sh, fuzz.sh)
#   RANKTUNE_SKIP_APT=1 ...       do not touch packages (e.g. on a machine without root)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # toolchain
  build-essential cmake ccache git pkg-config ca-certificates
  # LibTorch 1.13 and a multithreaded BLAS (without it fp32 matmul runs ~70x slower)
  libtorch-dev python3-torch libopenblas0-openmp libgloo-dev
  # C++ libraries
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libsentencepiece-dev
  libcurl4-openssl-dev libssl-dev
  libgtest-dev libgmock-dev
  # Python bindings, their tests and the notebook
  pybind11-dev python3-pybind11 python3-dev python3-numpy python3-pytest python3-venv python3-pip
  python3-setuptools python3-wheel python3-nbclient python3-ipykernel python3-nbformat jupyter-nbconvert
  python3-matplotlib
)
# The sanitizer and fuzzing builds (scripts/test.sh runs both): clang with its sanitizer runtimes.
if [ "${1:-}" = "--sanitizers" ]; then
  PACKAGES+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] && [ -z "${RANKTUNE_SKIP_APT:-}" ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Configure and build. Re-running only rebuilds what changed.
BUILD_DIR="${RANKTUNE_BUILD_DIR:-build}"
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE=/usr/bin/python3
fi
cmake --build "$BUILD_DIR" -j "$(nproc)"
