"""Render a results JSON of `benchmarks/run.py` as Markdown tables (for docs/benchmarks.md).

    .venv/bin/python benchmarks/report.py benchmarks/results/cpu.json
"""

from __future__ import annotations

import argparse
import json


def _f(x, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def render(result: dict) -> str:
    lines = []
    m = result["machine"]
    start = tuple(round(x, 2) for x in m["loadavg_start"])
    end = tuple(round(x, 2) for x in m.get("loadavg_end", ()))
    lines.append(
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('threads')} torch threads, device {m.get('device')}"
        f"{', ' + m['gpu'] if 'gpu' in m else ''}; torch {m.get('torch')}, transformers {m.get('transformers')}, "
        f"Python {m.get('python')}; run {m.get('date')}; load average (1, 5, 15 min) at start {start}, at end {end}."
    )
    if result.get("ops"):
        head = "| mixer | D | T | fwd ms | fwd / SDPA | fwd+bwd ms | fwd+bwd / SDPA | peak MiB (fwd+bwd) | runs |"
        lines += ["", head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in result["ops"]:
            lines.append(
                f"| {r['mixer']} | {r['D']} | {r['T']} | {r['fwd']['median_ms']:.1f} "
                f"| {_f(r.get('fwd_ratio_sdpa'), '.2f')} | {r['fwd_bwd']['median_ms']:.1f} "
                f"| {_f(r.get('fwd_bwd_ratio_sdpa'), '.2f')} | {_f(r.get('fwd_bwd_peak_mb'))} "
                f"| {r['fwd_bwd']['runs']} |"
            )
    if result.get("decode"):
        ctxs = sorted({r["context"] for r in result["decode"]})
        lines += ["", "| level | mixer | " + " | ".join(f"ctx {c} (us)" for c in ctxs) + " | longest / shortest |"]
        lines.append("|---|---|" + "---:|" * (len(ctxs) + 1))
        seen = []
        for r in result["decode"]:
            if (r["level"], r["mixer"]) not in seen:
                seen.append((r["level"], r["mixer"]))
        for level, mixer in seen:
            rs = {r["context"]: r for r in result["decode"] if r["level"] == level and r["mixer"] == mixer}
            cells = " | ".join(f"{rs[c]['step']['median_ms'] * 1e3:.0f}" for c in ctxs)
            lines.append(f"| {level} | {mixer} | {cells} | {rs[max(rs)]['ratio_to_shortest_context']:.2f} |")
    if result.get("model"):
        mo = result["model"]
        names = [k for k in mo if isinstance(mo[k], dict) and "tokens_per_s" in mo[k]]
        lines += ["", f"Training step, batch {mo['batch']} x {mo['length']} tokens:", ""]
        lines += ["| model | parameters | step ms (median) | min | max | runs | tokens/s |"]
        lines += ["|---|---:|---:|---:|---:|---:|---:|"]
        for n in names:
            s = mo[n]
            lines.append(
                f"| {n} | {mo['params'][n]} | {s['median_ms']:.1f} | {s['min_ms']:.1f} | {s['max_ms']:.1f} "
                f"| {s['runs']} | {s['tokens_per_s']:.0f} |"
            )
        lines.append(f"\nRatio of tokens per second, Mesa / Llama: {mo['tokens_per_s_ratio_mesa_over_llama']:.3f}")
    if result.get("targets"):
        lines += ["", "| target | measured | limit | verdict |", "|---|---:|---|---|"]
        for t in result["targets"]:
            verdict = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
            lines.append(f"| {t['target']} | {_f(t['value'], '.3f')} | {t['limit']} | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", help="a results file written by benchmarks/run.py")
    print(render(json.load(open(p.parse_args().json))))


if __name__ == "__main__":
    main()
