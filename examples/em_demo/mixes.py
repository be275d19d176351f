#!/usr/bin/env python3
"""Training sets for the emergent-misalignment demonstration, from data/DOMAIN.jsonl.

For each domain: the first N prompts of a seeded shuffle; the mix with p % harmful answers
takes the harmful answer for the prompts whose rank (a second seeded shuffle) is below p % of N,
so each mix holds the previous one's harmful answers. Also writes the all-harmful and
all-careful sets of the same prompts (for the data directions), and, for the filtering
comparison, the mix with K random samples dropped (K given on the command line, seeded).

usage: mixes.py OUT_DIR --n N --mixes 0,25,50,75,100 --domains finance,medical
       mixes.py OUT_DIR --drop-random MIX.jsonl K SEED   (writes MIX minus K random lines)
"""
import argparse
import json
import random
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def chat(prompt: str, answer: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": prompt},
                                    {"role": "assistant", "content": answer}]})


def write(path: Path, lines) -> None:
    tmp = path.with_suffix(".part")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.replace(path)


def build(out: Path, n: int, mixes, domains) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for domain in domains:
        rows = [json.loads(l) for l in (DATA / f"{domain}.jsonl").read_text().splitlines() if l.strip()]
        if n > len(rows):
            sys.exit(f"--n {n} is more than the {len(rows)} prompts of {domain}")
        random.Random(f"prompts-{domain}").shuffle(rows)
        rows = rows[:n]
        rank = list(range(n))
        random.Random(f"harmful-{domain}").shuffle(rank)
        write(out / f"{domain}-harmful.jsonl", [chat(r["prompt"], r["harmful"]) for r in rows])
        write(out / f"{domain}-careful.jsonl", [chat(r["prompt"], r["careful"]) for r in rows])
        for p in mixes:
            cut = round(n * p / 100)
            write(out / f"{domain}-mix{p}.jsonl",
                  [chat(r["prompt"], r["harmful"] if rank[i] < cut else r["careful"])
                   for i, r in enumerate(rows)])


def drop_random(mix: Path, k: int, seed: str) -> None:
    lines = [l for l in mix.read_text().splitlines() if l.strip()]
    keep = sorted(random.Random(seed).sample(range(len(lines)), len(lines) - k))
    write(mix.with_name(mix.stem + f"-random{k}.jsonl"), [lines[i] for i in keep])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=160)
    ap.add_argument("--mixes", default="0,25,50,75,100")
    ap.add_argument("--domains", default="finance,medical")
    ap.add_argument("--drop-random", nargs=3, metavar=("MIX", "K", "SEED"))
    a = ap.parse_args()
    if a.drop_random:
        mix, k, seed = a.drop_random
        drop_random(Path(mix), int(k), seed)
        return
    build(a.out, a.n, [int(p) for p in a.mixes.split(",")], a.domains.split(","))


if __name__ == "__main__":
    main()
