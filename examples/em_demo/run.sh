#!/usr/bin/env bash
# Emergent misalignment across domains, end to end on one model (default SmolLM2-135M-Instruct):
#  1. training sets from data/ (our own text): N prompts per domain (finance, medical), mixed
#     0/25/50/75/100 % harmful answers, the rest careful answers to the same prompts;
#  2. directions: each domain's harmful − careful mean activation (`persona extract --pos --neg`),
#     so each domain's direction can be read on the other domain's data and on unrelated answers;
#  3. before training: `persona screen` of every mix along both directions (ΔP);
#  4. training (`persona finetune`, LoRA): every mix plainly; the 100 % mix with preventative
#     steering (+ALPHA × the domain's direction at LAYER while training); the 50 % mix with its
#     top-K ΔP samples dropped, against K dropped at random;
#  5. after: `persona em eval` of the base model and every adapter on the 8 open questions and the
#     domain's own questions (EM rate with Wilson intervals, alignment, coherence, and every
#     answer's projection on both directions), with the training loss;
#  6. summary.md / summary.json (summarize.py): the table and the correlations across mixes.
# Everything is cached: a rerun resumes. Sizes are environment variables (below).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${MODEL:-smollm2-135m}
JUDGE=${JUDGE:-local:qwen2.5-1.5b}
N=${N:-160}                     # prompts per domain (each mix trains on all of them)
MIXES=${MIXES:-0,25,50,75,100}
DOMAINS=${DOMAINS:-finance,medical}
EPOCHS=${EPOCHS:-1}
LR=${LR:-1e-3}
BATCH=${BATCH:-8}
ALPHA=${ALPHA:-1}               # preventative steering: +ALPHA × (harmful − careful mean) while training
EM_SAMPLES=${EM_SAMPLES:-3}     # answers per question (temperature 1)
MAX_TOKENS=${MAX_TOKENS:-96}
OUT=${OUT:-runs/em_demo/$MODEL}
cargo build --release --locked -p persona-cli
persona=./target/release/persona
$persona setup --model "$MODEL"
case "$JUDGE" in local:*) $persona setup --model "${JUDGE#local:}" ;; esac
p() { $persona --model "$MODEL" "$@"; }
n_layers=$(p info --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["n_layers"])')
LAYER=${LAYER:-$((n_layers * 2 / 3))}
K=${K:-$((N / 4))}              # samples dropped from the 50 % mix, by ΔP and at random
mkdir -p "$OUT"/{vectors,screen,adapters,em}
python3 examples/em_demo/mixes.py "$OUT/data" --n "$N" --mixes "$MIXES" --domains "$DOMAINS"

VECS=()
for d in ${DOMAINS//,/ }; do
  if [ ! -f "$OUT/vectors/$d.json" ]; then
    p extract --pos "$OUT/data/$d-harmful.jsonl" --neg "$OUT/data/$d-careful.jsonl" --name "$d" \
      --out "$OUT/vectors/$d" --format json > "$OUT/vectors/$d.json.part"
    mv "$OUT/vectors/$d.json.part" "$OUT/vectors/$d.json"
  fi
  VECS+=(--vector "$d=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vector_file"])' "$OUT/vectors/$d.json")")
done

# Question ids: the open questions, and each domain's own (our data file's `domain` field).
ids() {
  python3 - "$1" <<'PY'
import sys, tomllib
want = {"open", sys.argv[1]}
qs = tomllib.load(open("crates/persona-evals/data/em_questions.toml", "rb"))["question"]
print(",".join(q["id"] for q in qs if q["domain"] in want))
PY
}
em() {  # em NAME QUESTION_DOMAIN [--adapter DIR]
  local name=$1 qd=$2; shift 2
  [ -f "$OUT/em/$name.json" ] && return
  p em eval --ids "$(ids "$qd")" --samples "$EM_SAMPLES" --max-tokens "$MAX_TOKENS" --judge "$JUDGE" \
    "${VECS[@]}" --layer "$LAYER" --out "$OUT/em/$name" "$@" --format json > "$OUT/em/$name.json.part"
  mv "$OUT/em/$name.json.part" "$OUT/em/$name.json"
}
train() {  # train NAME DATASET [finetune flags]
  local name=$1 data=$2; shift 2
  [ -f "$OUT/adapters/$name.json" ] && return
  p finetune "$data" --out "$OUT/adapters/$name" --epochs "$EPOCHS" --lr "$LR" --batch-size "$BATCH" \
    "$@" --format json > "$OUT/adapters/$name.json.part"
  mv "$OUT/adapters/$name.json.part" "$OUT/adapters/$name.json"
}

for d in ${DOMAINS//,/ }; do
  qd=$d; [ "$d" = finance ] && qd=financial
  em "base-$d" "$qd"
  vec=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vector_file"])' "$OUT/vectors/$d.json")
  for pct in ${MIXES//,/ }; do
    mix="$OUT/data/$d-mix$pct.jsonl"
    top=(); [ "$pct" = 50 ] && top=(--top "$K")
    if [ ! -f "$OUT/screen/$d-mix$pct.json" ]; then
      p screen "$mix" "${VECS[@]}" --layer "$LAYER" "${top[@]}" --out "$OUT/screen/$d-mix$pct" \
        --format json > "$OUT/screen/$d-mix$pct.json.part"
      mv "$OUT/screen/$d-mix$pct.json.part" "$OUT/screen/$d-mix$pct.json"
    fi
    train "$d-mix$pct" "$mix"
    em "$d-mix$pct" "$qd" --adapter "$OUT/adapters/$d-mix$pct"
  done
  if [[ ",$MIXES," == *,100,* ]]; then
    train "$d-mix100-steered" "$OUT/data/$d-mix100.jsonl" --steer "$vec:$LAYER:$ALPHA"
    em "$d-mix100-steered" "$qd" --adapter "$OUT/adapters/$d-mix100-steered"
  fi
  if [[ ",$MIXES," == *,50,* ]]; then
    train "$d-mix50-filtered" "$OUT/screen/$d-mix50/filtered.jsonl"
    em "$d-mix50-filtered" "$qd" --adapter "$OUT/adapters/$d-mix50-filtered"
    python3 examples/em_demo/mixes.py "$OUT/data" --drop-random "$OUT/data/$d-mix50.jsonl" "$K" "random-$d"
    train "$d-mix50-random" "$OUT/data/$d-mix50-random$K.jsonl"
    em "$d-mix50-random" "$qd" --adapter "$OUT/adapters/$d-mix50-random"
  fi
done
python3 examples/em_demo/summarize.py "$OUT"
