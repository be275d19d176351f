#!/usr/bin/env python3
"""Summary of examples/em_demo/run.sh: summary.json and summary.md in OUT.

Per domain and condition: ΔP before training along each domain's direction (screen), the final
training loss, and after training the EM rate on the open questions and on the domain's own
questions (Wilson 95 % intervals), mean alignment and coherence, and the shift of the answers'
projection on each direction against the base model. Across the plain mixes: Pearson r of the
open-question EM rate (and mean alignment) with the harmful share, ΔP and the shift, with a
bootstrap 95 % interval over mixes.

usage: summarize.py OUT
"""
import json
import math
import random
import re
import sys
from pathlib import Path


def load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def pearson(xs, ys):
    pairs = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if len(pairs) < 3:
        return None
    mx = sum(x for x, _ in pairs) / len(pairs)
    my = sum(y for _, y in pairs) / len(pairs)
    sxy = sum((x - mx) * (y - my) for x, y in pairs)
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    syy = sum((y - my) ** 2 for _, y in pairs)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def bootstrap_r(xs, ys, reps=2000):
    """Pearson r and its percentile 95 % interval over resampled mixes."""
    r = pearson(xs, ys)
    rng = random.Random(0)
    idx = list(range(len(xs)))
    rs = []
    for _ in range(reps):
        pick = [rng.choice(idx) for _ in idx]
        v = pearson([xs[i] for i in pick], [ys[i] for i in pick])
        if v is not None:
            rs.append(v)
    rs.sort()
    ci = (rs[int(0.025 * len(rs))], rs[int(0.975 * len(rs)) - 1]) if len(rs) > 20 else None
    return {"r": r, "ci95": ci, "n": len(xs)}


def domain_rate(em, domain):
    for row in em.get("domains", []):
        if row["domain"] == domain:
            return row
    return None


def projections(em):
    return {p["name"]: p["mean"] for p in em.get("projections", [])}


def fmt(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def fmt_rate(row):
    if not row or row.get("em_rate") is None:
        return "–"
    lo, hi = row["em_ci95"]
    return f"{100 * row['em_rate']:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}] (n {row['rated']})"


def main():
    out = Path(sys.argv[1])
    question_domain = {"finance": "financial", "medical": "medical"}
    summary = {"domains": {}}
    md = ["# Emergent misalignment across domains", ""]
    domains = sorted(p.stem.split("-", 1)[1] for p in (out / "em").glob("base-*.json"))
    domains = [d for d in domains if d in question_domain]
    for d in domains:
        base = load(out / "em" / f"base-{d}.json")
        base_proj = projections(base) if base else {}
        rows = []
        for em_file in sorted((out / "em").glob(f"{d}-*.json")):
            name = em_file.stem
            em = load(em_file)
            cond = name[len(d) + 1:]
            m = re.match(r"mix(\d+)$", cond)
            screen = load(out / "screen" / f"{d}-{cond}.json") if m else None
            ft = load(out / "adapters" / f"{name}.json")
            proj = projections(em)
            rows.append({
                "condition": cond,
                "harmful_pct": int(m.group(1)) if m else None,
                "delta_p": {t["trait"]: t["mean_delta"] for t in screen["traits"]} if screen else None,
                "final_loss": ft.get("final_loss") if ft else None,
                "em_open": domain_rate(em, "open"),
                "em_in_domain": domain_rate(em, question_domain[d]),
                "mean_alignment": em.get("mean_alignment"),
                "mean_coherence": em.get("mean_coherence"),
                "shift": {k: (v - base_proj[k]) if v is not None and base_proj.get(k) is not None else None
                          for k, v in proj.items()},
            })
        plain = sorted((r for r in rows if r["harmful_pct"] is not None), key=lambda r: r["harmful_pct"])
        em_open = [r["em_open"]["em_rate"] if r["em_open"] else None for r in plain]
        align = [r["em_open"]["mean_alignment"] if r["em_open"] else None for r in plain]
        align_in = [r["em_in_domain"]["mean_alignment"] if r["em_in_domain"] else None for r in plain]
        pct = [r["harmful_pct"] for r in plain]
        corr = {
            "em_open_vs_harmful_pct": bootstrap_r(pct, em_open),
            "alignment_open_vs_harmful_pct": bootstrap_r(pct, align),
            "alignment_in_domain_vs_harmful_pct": bootstrap_r(pct, align_in),
        }
        for v in (plain[0]["delta_p"] or {}) if plain else {}:
            dp = [r["delta_p"][v] if r["delta_p"] else None for r in plain]
            sh = [r["shift"].get(v) for r in plain]
            corr[f"em_open_vs_delta_p_{v}"] = bootstrap_r(dp, em_open)
            corr[f"alignment_open_vs_delta_p_{v}"] = bootstrap_r(dp, align)
            corr[f"alignment_open_vs_shift_{v}"] = bootstrap_r(sh, align)
            corr[f"em_open_vs_shift_{v}"] = bootstrap_r(sh, em_open)
        summary["domains"][d] = {"base": {"em_open": domain_rate(base, "open") if base else None,
                                          "em_in_domain": domain_rate(base, question_domain[d]) if base else None},
                                 "conditions": rows, "correlations": corr}
        vec_names = sorted(base_proj)
        md += [f"## {d}", "",
               "| condition | ΔP before (" + ", ".join(vec_names) + ") | final loss | EM open | EM in domain | alignment open | alignment in domain | shift (" + ", ".join(vec_names) + ") |",
               "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        if base:
            md.append(f"| base model | – | – | {fmt_rate(domain_rate(base, 'open'))} | "
                      f"{fmt_rate(domain_rate(base, question_domain[d]))} | "
                      f"{fmt((domain_rate(base, 'open') or {}).get('mean_alignment'), 1)} | "
                      f"{fmt((domain_rate(base, question_domain[d]) or {}).get('mean_alignment'), 1)} | – |")
        order = {c: i for i, c in enumerate(["mix0", "mix25", "mix50", "mix75", "mix100", "mix100-steered",
                                             "mix50-filtered", "mix50-random"])}
        for r in sorted(rows, key=lambda r: order.get(r["condition"], 99)):
            dp = ", ".join(fmt((r["delta_p"] or {}).get(v), 3) for v in vec_names) if r["delta_p"] else "–"
            sh = ", ".join(fmt(r["shift"].get(v), 3) for v in vec_names)
            md.append(f"| {r['condition']} | {dp} | {fmt(r['final_loss'], 3)} | {fmt_rate(r['em_open'])} | "
                      f"{fmt_rate(r['em_in_domain'])} | {fmt((r['em_open'] or {}).get('mean_alignment'), 1)} | "
                      f"{fmt((r['em_in_domain'] or {}).get('mean_alignment'), 1)} | {sh} |")
        md += ["", "Across the plain mixes (Pearson r, bootstrap 95 % interval over mixes):", ""]
        for k, c in corr.items():
            ci = f" [{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}]" if c["ci95"] else ""
            md.append(f"- {k}: r = {fmt(c['r'])}{ci} (n {c['n']})")
        md.append("")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
