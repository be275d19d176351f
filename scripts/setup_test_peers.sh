#!/usr/bin/env bash
# Creates the Python venv that persona's peer tests run against: llama-cpp-python 0.3.36 with
# its OpenAI-compatible server, safetensors, numpy and gguf (pins in
# scripts/test-peers-requirements.txt).
#
#   bash scripts/setup_test_peers.sh
#
# Idempotent: when the venv already imports everything it needs, it only says so (a second).
# Otherwise it creates the venv (or completes an existing one) with pip; llama-cpp-python has
# no Linux wheel on PyPI, so pip compiles llama.cpp from the sdist: ~10 min on 2 cores, needs a
# C/C++ compiler (Debian/Ubuntu: apt-get install build-essential python3-venv); cmake and ninja
# come from PyPI.
#
# Environment:
#   PERSONA_TEST_PEERS_VENV  the venv (default ${PERSONA_HOME:-$HOME/.cache/persona}/test-peers-venv);
#                            an existing working venv there is used as it is
#   PYTHON                   the interpreter that creates the venv (default python3, >= 3.9)
#   CMAKE_ARGS               overrides the llama.cpp build flags chosen below
#   CMAKE_BUILD_PARALLEL_LEVEL  build jobs (default 2)
#
# The build does not use -march=native: on CPUs with AMX the native build of this llama.cpp
# segfaults in llama_decode. It enables the x86 extensions this CPU reports instead.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in
  "") ;;
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$HERE/$(basename "${BASH_SOURCE[0]}")"; exit 0 ;;
  *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
esac

VENV="${PERSONA_TEST_PEERS_VENV:-${PERSONA_HOME:-$HOME/.cache/persona}/test-peers-venv}"
PYTHON="${PYTHON:-python3}"
REQS="$HERE/test-peers-requirements.txt"
VPY="$VENV/bin/python"
# llama_cpp.server alone imports none of the server's dependencies: check what it runs on.
CHECK='import llama_cpp, llama_cpp.server.app, uvicorn, safetensors, numpy, gguf'

log() { echo "[setup_test_peers] $*"; }

works() { [ -x "$VPY" ] && "$VPY" -c "$CHECK" >/dev/null 2>&1; }

if works; then
  log "ok: $VENV (llama_cpp $("$VPY" -c 'import llama_cpp; print(llama_cpp.__version__)'))"
  exit 0
fi

if [ ! -x "$VPY" ]; then
  command -v "$PYTHON" >/dev/null || { echo "error: no $PYTHON: install Python >= 3.9 or set PYTHON" >&2; exit 1; }
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
    || { echo "error: $PYTHON is $("$PYTHON" -V 2>&1); the peers need Python >= 3.9" >&2; exit 1; }
  log "creating $VENV with $("$PYTHON" -V 2>&1)"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV" \
    || { echo "error: '$PYTHON -m venv $VENV' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }
fi
"$VPY" -m pip --version >/dev/null 2>&1 || "$VPY" -m ensurepip --upgrade

if [ -z "${CMAKE_ARGS:-}" ] && [ "$(uname -m)" = x86_64 ]; then
  flags="$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)"
  has() { [[ " $flags " == *" $1 "* ]]; }
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
  has avx_vnni && CMAKE_ARGS="$CMAKE_ARGS -DGGML_AVX_VNNI=ON"
  has avx512f && CMAKE_ARGS="$CMAKE_ARGS -DGGML_AVX512=ON"
  has avx512vbmi && CMAKE_ARGS="$CMAKE_ARGS -DGGML_AVX512_VBMI=ON"
  has avx512_vnni && CMAKE_ARGS="$CMAKE_ARGS -DGGML_AVX512_VNNI=ON"
  has avx512_bf16 && CMAKE_ARGS="$CMAKE_ARGS -DGGML_AVX512_BF16=ON"
fi
export CMAKE_ARGS="${CMAKE_ARGS:-}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

if ! "$VPY" -c 'import llama_cpp' >/dev/null 2>&1; then
  command -v c++ >/dev/null || command -v g++ >/dev/null \
    || { echo "error: building llama-cpp-python needs a C/C++ compiler (Debian/Ubuntu: apt-get install build-essential)" >&2; exit 1; }
  log "building llama-cpp-python from source (~10 min on 2 cores) with CMAKE_ARGS=$CMAKE_ARGS"
fi
# --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS, so a cached wheel could be a native build.
"$VPY" -m pip install --no-cache-dir -r "$REQS"

if ! works; then
  "$VPY" -c "$CHECK" || true
  echo "error: $VENV still cannot import the peers ($CHECK)" >&2
  exit 1
fi
log "ok: $VENV ($("$VPY" -c 'import llama_cpp; print("llama_cpp", llama_cpp.__version__, "|", llama_cpp.llama_print_system_info().decode().strip())'))"
