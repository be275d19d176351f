#!/usr/bin/env bash
# Installs the PyTorch + PEFT training peer that `persona bench` runs beside our LoRA trainer:
# torch, transformers, accelerate, peft, gguf and numpy at the versions in
# scripts/train-peer-requirements.txt, into the peers' venv (the one the llama.cpp / HF peers
# of the shared bench use, so one venv serves every peer).
#
#   bash scripts/setup_train_peer.sh
#
# Environment:
#   PEERS_VENV    the venv (default ${PERSONA_HOME:-$HOME/.cache/persona}/peers-venv)
#   PYTHON        the interpreter that creates it (default python3, >= 3.10)
#
# Idempotent: when the venv already imports peft and torch at the pinned versions it only says
# so. PyPI's Linux torch wheel pulls ~3 GB of CUDA libraries the CPU peer never uses.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${PEERS_VENV:-${PERSONA_HOME:-$HOME/.cache/persona}/peers-venv}"
PYTHON="${PYTHON:-python3}"
REQS="$here/train-peer-requirements.txt"
VPY="$VENV/bin/python"

pinned() { grep -i -E "^$1==" "$REQS" | cut -d= -f3; }
if [ -x "$VPY" ] && "$VPY" - "$(pinned torch)" "$(pinned peft)" <<'PY' 2>/dev/null; then
import sys, torch, peft, transformers, gguf  # noqa: F401
sys.exit(0 if torch.__version__.split("+")[0] == sys.argv[1] and peft.__version__ == sys.argv[2] else 1)
PY
  echo "[setup_train_peer] $VENV already has torch $(pinned torch) and peft $(pinned peft)"
  exit 0
fi
if [ ! -x "$VPY" ]; then
  echo "[setup_train_peer] creating $VENV"
  "$PYTHON" -m venv "$VENV" \
    || { echo "error: '$PYTHON -m venv $VENV' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }
fi
"$VPY" -m pip install --upgrade pip wheel
echo "[setup_train_peer] installing $(grep -v '^#' "$REQS" | tr '\n' ' ')"
"$VPY" -m pip install -r "$REQS"
echo "[setup_train_peer] done: persona bench runs the PyTorch + PEFT peer with $VPY"
