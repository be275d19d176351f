#!/usr/bin/env python3
"""Collects examples/finetune_shift/run.sh's results into summary.md and summary.json:
per mix, the screened ΔP (before training), the shift along the vector and the judged trait
change out of and in the training domain (after), the final training loss, plainly and with
preventative steering; and the correlations across the mixes, with Fisher-z 95 % intervals.
Standard library only."""
import json
import math
import sys
from pathlib import Path

MIXES = [0, 25, 50, 75, 100]
VARIANTS = ["plain", "steered"]


def load(path):
    with open(path) as f:
        return json.load(f)


def pearson(x, y):
    n = len(x)
    if n < 3:
        return None, None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None, None
    r = sxy / math.sqrt(sxx * syy)
    if n < 4 or abs(r) >= 1:
        return r, None
    z, se = math.atanh(r), 1 / math.sqrt(n - 3)
    return r, (math.tanh(z - 1.96 * se), math.tanh(z + 1.96 * se))


def fmt(v, digits=2):
    return "–" if v is None else f"{v:.{digits}f}"


def fmt_ci(ci, digits=2):
    return "–" if not ci else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def main(out):
    out = Path(out)
    rows = []
    for pct in MIXES:
        screen = load(out / "screen" / f"mix{pct}.json")["traits"][0]
        for variant in VARIANTS:
            train = load(out / "adapters" / f"mix{pct}-{variant}.json")
            ood = load(out / "shift" / f"mix{pct}-{variant}-ood.json")
            ind = load(out / "shift" / f"mix{pct}-{variant}-in.json")
            rows.append({
                "mix": pct,
                "variant": variant,
                "delta_p": screen["mean_delta"],
                "delta_p_ci95": screen["ci95"],
                "shift": ood["shift"],
                "shift_ci95": ood["shift_ci95"],
                "trait_change_ood": ood["trait_change"],
                "trait_change_ood_ci95": ood["trait_change_ci95"],
                "tuned_trait_ood": ood["tuned_trait"],
                "base_trait_ood": ood["base_trait"],
                "shift_in": ind["shift"],
                "trait_change_in": ind["trait_change"],
                "trait_change_in_ci95": ind["trait_change_ci95"],
                "first_loss": train["first_loss"],
                "final_loss": train["final_loss"],
            })
    plain = [r for r in rows if r["variant"] == "plain"]

    def corr(xs, ys, label):
        r, ci = pearson(xs, ys)
        return {"pair": label, "r": r, "ci95": ci, "n": len(xs)}

    col = lambda rs, k: [r[k] for r in rs]
    correlations = [
        corr(col(plain, "delta_p"), col(plain, "shift"), "screened ΔP vs shift (plain)"),
        corr(col(plain, "delta_p"), col(plain, "trait_change_ood"), "screened ΔP vs out-of-domain trait change (plain)"),
        corr(col(plain, "shift"), col(plain, "trait_change_ood"), "shift vs out-of-domain trait change (plain)"),
        corr(col(rows, "shift"), col(rows, "trait_change_ood"), "shift vs out-of-domain trait change (all 10 runs)"),
        corr(col(plain, "delta_p"), col(plain, "trait_change_in"), "screened ΔP vs in-domain trait change (plain)"),
    ]
    explained = pearson(col(rows, "shift"), col(rows, "trait_change_ood"))[0]
    summary = {
        "rows": rows,
        "correlations": correlations,
        "variance_of_ood_change_explained_by_shift": None if explained is None else explained ** 2,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [
        "| mix (% pessimistic) | training | screened ΔP | shift along v̂ | optimism change, other domains | optimism change, finance | final loss |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['mix']} | {r['variant']} | {fmt(r['delta_p'])} {fmt_ci(r['delta_p_ci95'])} | "
            f"{fmt(r['shift'])} {fmt_ci(r['shift_ci95'])} | "
            f"{fmt(r['trait_change_ood'], 1)} {fmt_ci(r['trait_change_ood_ci95'], 1)} | "
            f"{fmt(r['trait_change_in'], 1)} {fmt_ci(r['trait_change_in_ci95'], 1)} | {fmt(r['final_loss'], 3)} |"
        )
    lines.append("")
    for c in correlations:
        lines.append(f"- {c['pair']}: r = {fmt(c['r'], 3)} {fmt_ci(c['ci95'], 3)} (n = {c['n']})")
    if explained is not None:
        lines.append(f"- share of the out-of-domain change's variance explained by the shift (r², 10 runs): {explained ** 2:.3f}")
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/finetune_shift")
