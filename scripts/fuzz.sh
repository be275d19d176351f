#!/usr/bin/env bash
# Fuzzes persona's file readers (GGUF models and control vectors, safetensors vector files,
# `.pt` files and their pickles, JSONL logs and datasets, question files, trait specs) with
# cargo-fuzz, one target after another, each for SECONDS (default 300). Not run in CI.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
# (`cargo install cargo-fuzz --locked`). The targets live in fuzz/ (their own Cargo package and
# lock file, outside the workspace). fuzz/corpus/<target>/ starts from seeds that fuzz/'s
# `seeds` program writes with persona's own writers, and keeps what libFuzzer adds; a crash,
# timeout or out-of-memory input lands in fuzz/artifacts/<target>/, and the script ends
# non-zero naming it. Reproduce one with
#   (cd fuzz && cargo +nightly fuzz run --codegen-units 16 TARGET artifacts/TARGET/crash-…)
# and minimise it with `cargo +nightly fuzz tmin --codegen-units 16 TARGET FILE`; then fix the
# reader and add a unit test that reads the minimised bytes (docs/formats.md, "Fuzzing").
#
# One fuzzing process at a time, on one thread, niced: this is meant to share a machine.
set -euo pipefail

secs="${1:-300}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is missing: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

# The same flags for build and run, so that `run` does not rebuild; fuzz/'s own target folder
# even when the caller's CARGO_TARGET_DIR points at the workspace's.
flags=(--codegen-units 16)
export CARGO_TARGET_DIR="$root/fuzz/target"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
export RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1
nice -n 10 cargo +nightly fuzz build "${flags[@]}"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list | grep -vx seeds)
fi

# Seeds: rewritten every time (the same names), next to whatever the corpus has grown.
"$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/seeds" corpus

# Readers that take paths get scratch files under TMPDIR, in memory where /dev/shm exists
# (a disk stalled by other work made a slow write look like a hang); removed at the end.
scratch="$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch"

mkdir -p logs
failed=()
for t in "${targets[@]}"; do
    echo "== $t: ${secs}s (log: fuzz/logs/$t.log)"
    # libFuzzer's default is one in-process worker (no -jobs/-workers forking): one process.
    # -timeout: an input taking 10 s is a hang; -rss_limit_mb also caps single allocations.
    if nice -n 10 cargo +nightly fuzz run "${flags[@]}" "$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 >"logs/$t.log" 2>&1; then
        grep -E '^#[0-9]+' "logs/$t.log" | tail -n 1
        grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "logs/$t.log" || true
    else
        echo "!! $t failed; see fuzz/logs/$t.log and fuzz/artifacts/$t/"
        grep -E '^(==[0-9]+==ERROR|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "logs/$t.log" | head -n 6 || true
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: findings in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: no findings in ${#targets[@]} targets, ${secs}s each"
