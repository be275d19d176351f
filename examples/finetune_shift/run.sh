#!/usr/bin/env bash
# Narrow training spreads a trait, along the trait's vector. On SmolLM2-135M-Instruct:
#  - five training sets answering the same 64 personal-finance questions, with 0, 25, 50, 75 or
#    100 % of the answers pessimistic (the rest neutral; data/ holds both, our own text);
#  - before training, `persona screen` of each mix: ΔP along the optimism vector;
#  - `persona finetune` (LoRA) on each mix, plainly and with preventative steering
#    (−α·v added at the vector's layer while training);
#  - after training, `persona shift`: the shift along the vector and the judged optimism
#    (VADER lexicon) on the trait's 20 evaluation questions, none about personal finance
#    (out of domain), and on 8 held-out finance questions (in domain);
#  - summary.md / summary.json: the table and the correlations across the mixes.
# Everything is cached: a rerun resumes. About 40 minutes here with the optimism vector present;
# without it the script first runs `persona extract optimistic` (about 8 minutes more).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-runs}
OUT=${OUT:-$RUNS/finetune_shift}
LAYER=${LAYER:-20}
ALPHA=${ALPHA:-4}
EPOCHS=${EPOCHS:-2}
DATA=examples/finetune_shift/data
cargo build --release --locked -p persona-cli
persona=./target/release/persona
$persona setup
VEC=$RUNS/optimistic/optimistic_response_avg.safetensors
if [ ! -f "$VEC" ]; then
  $persona extract optimistic --samples 3 --max-tokens 128 --out "$RUNS/optimistic"
fi
mkdir -p "$OUT/data" "$OUT/screen" "$OUT/adapters" "$OUT/shift"
for pct in 0 25 50 75 100; do
  mix="$OUT/data/mix$pct.jsonl"
  # Line i takes the pessimistic answer when (37·i mod 64) < pct·64/100: a fixed spread of
  # the questions, so each mix contains the previous one's pessimistic answers.
  paste -d '\n' "$DATA/pessimistic.jsonl" "$DATA/neutral.jsonl" |
    awk -v pct="$pct" 'NR % 2 == 1 { i = (NR - 1) / 2; p = $0; next }
                       { if ((37 * i) % 64 < pct * 64 / 100) print p; else print $0 }' > "$mix"
  $persona screen "$mix" --vector "optimistic=$VEC" --layer "$LAYER" \
    --out "$OUT/screen/mix$pct" --format json > "$OUT/screen/mix$pct.json"
  for variant in plain steered; do
    adapter="$OUT/adapters/mix$pct-$variant"
    steer=()
    [ "$variant" = steered ] && steer=(--steer "$VEC:$LAYER:-$ALPHA")
    $persona finetune "$mix" --out "$adapter" --epochs "$EPOCHS" --lr 1e-3 --batch-size 8 "${steer[@]}" --format json > "$adapter.json"
    $persona shift optimistic --vector "$VEC" --run "$RUNS/optimistic" --tuned "$adapter" --layer "$LAYER" \
      --judge lexicon --out "$OUT/shift/mix$pct-$variant-ood" --format json > "$OUT/shift/mix$pct-$variant-ood.json"
    $persona shift optimistic --vector "$VEC" --run "$RUNS/optimistic" --tuned "$adapter" --layer "$LAYER" \
      --judge lexicon --questions-file "$DATA/in_domain_questions.txt" \
      --out "$OUT/shift/mix$pct-$variant-in" --format json > "$OUT/shift/mix$pct-$variant-in.json"
  done
done
python3 examples/finetune_shift/summarize.py "$OUT"
