"""The prepared GPU run of issue 14: op and model benchmarks on CUDA, and every op checked against float64 there.

    python benchmarks/gpu_check.py --out $OUT/gpu_check.json | tee $OUT/gpu_check.md    # CUDA: about 6-7 minutes
    python benchmarks/gpu_check.py --device cpu                                          # no GPU: smoke form, seconds

Three parts, each printing a Markdown table for docs/benchmarks.md:
  1. reference checks: softmax (SDPA), linear, gated linear, mesa ungated (Woodbury), mesa gated exact (Cholesky),
     mesa gated CG and the gated default (method 'auto', the layer's own path) at a small ragged shape, in float32 and in bf16 autocast: the output and the gradient of every
     input against the float64 reference on the same device (`reference_check.py`).
  2. ops: forward and forward+backward time of the same ops at B = 4, H = 4, D = 64, T = 1k, 4k, 16k, in bf16 autocast
     (bf16 q, k, v; the linear and mesa ops keep their states and solves in float32) and in float32, with ratios to
     SDPA (torch picks its flash kernel for bf16) from the same interleaved rounds, and the CUDA peak memory.
  3. model: training tokens per second of `mesanet` and `docstrings-hybrid` against their LlamaForCausalLM twins
     (`presets_vs_llama.py`) at T = 1k, 4k, 16k, 16k tokens per step, in bf16 autocast and in float32.
Time: the timed parts (2 and 3) share --budget-s seconds. Each (precision, T) group gets an equal share of what is
left; rounds stop when a group's share is spent (after one); an op or length whose predicted cost (its time at the
previous T scaled by (T / T_prev)^2) exceeds what is left is skipped. Every skip and cut is printed.
On CPU (`--device cpu`) only the smoke form runs (`--smoke` implied; one thread unless --threads): tiny shapes, a
tiny model, seconds; the CPU figures for docs come from `run.py` and `presets_vs_llama.py`.
Exit status 1 if a reference check fails.
Needs only torch, transformers and this repository (no network, no datasets).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

# This checkout's mesa_lm (the GPU machines run it from a copy of the tree, not installed), and the benchmarks beside.
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
import reference_check  # noqa: E402
from measure import peak_memory_mb, timed  # noqa: E402
from presets_vs_llama import DEFAULT_PRESETS, compare_at_length  # noqa: E402
from presets_vs_llama import markdown_table as model_table  # noqa: E402
from run import fmt, machine_info  # noqa: E402

PRECISIONS = ["bfloat16", "float32"]

# The full (CUDA) form and the smoke form: shapes, repeats and the time budget of the timed parts.
FULL = dict(
    check_shape=(2, 100, 2, 32), check_chunk=32, batch=4, heads=4, dims=[64], lengths=[1024, 4096, 16384], repeats=10,
    model_lengths=[1024, 4096, 16384], tokens_per_step=16384, rounds=5, model_overrides={}, budget_s=300.0,
)  # fmt: skip
SMOKE = dict(
    check_shape=(2, 21, 2, 8), check_chunk=8, batch=1, heads=2, dims=[8], lengths=[16, 32], repeats=2,
    model_lengths=[16, 32], tokens_per_step=32, rounds=2, model_overrides={"hidden_size": 16, "vocab_size": 64},
    budget_s=30.0,
)  # fmt: skip


class Budget:
    """Seconds left for the timed parts, shared out in equal parts among the groups still to run."""

    def __init__(self, seconds: float, groups: int):
        self.deadline, self.groups = time.perf_counter() + seconds, groups

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def next_share(self) -> float:
        share = max(self.left(), 0.0) / max(self.groups, 1)
        self.groups -= 1
        return share


def too_costly(last: dict, key, T: int, budget: Budget, calls: int = 2) -> str | None:
    """Why `calls` runs of `key` at length T would not fit in what is left of the budget, or None: the guess is its
    time at the last length x (T / T_last)^2. The first length of each part always runs."""
    if key not in last:
        return None
    t_last, seconds = last[key]
    cost = calls * seconds * (T / t_last) ** 2
    return f"predicted {cost:.0f} s > {budget.left():.0f} s left" if cost > budget.left() else None


def bench_ops(cfg: dict, device: torch.device, budget: Budget, skipped: list[str]) -> list[dict]:
    """fwd and fwd+bwd time of each op per (precision, D, T), in interleaved rounds; ratios to SDPA."""
    B, H, rows = cfg["batch"], cfg["heads"], []
    for precision in PRECISIONS:
        dtype = getattr(torch, precision)
        for D in cfg["dims"]:
            last: dict = {}  # op -> (T, seconds of one fwd + one fwd+bwd)
            for T in cfg["lengths"]:
                share = budget.next_share()
                group_start = time.perf_counter()
                calls = {}
                for kind in reference_check.CHECKED_OPS:
                    why = too_costly(last, kind, T, budget)  # warm-up and one round
                    if why:
                        skipped.append(f"ops {kind} {precision} D={D} T={T}: {why}")
                        print(f"  skipped: {skipped[-1]}", flush=True)
                        continue
                    calls[kind] = op_calls(kind, B, T, H, D, dtype, device)
                times = {kind: {"fwd": [], "fwd_bwd": []} for kind in calls}
                for kind in list(calls):  # warm-up, which also gives the first estimate of the cost
                    try:
                        t0 = time.perf_counter()
                        calls[kind]["fwd"]()
                        calls[kind]["fwd_bwd"]()
                        last[kind] = (T, time.perf_counter() - t0)
                    except torch.cuda.OutOfMemoryError:
                        skipped.append(f"ops {kind} {precision} D={D} T={T}: out of memory")
                        print(f"  skipped: {skipped[-1]}", flush=True)
                        del calls[kind], times[kind]
                        torch.cuda.empty_cache()
                for rep in range(cfg["repeats"]):
                    for which in ("fwd", "fwd_bwd"):
                        for kind, fns in calls.items():
                            times[kind][which].append(timed(fns[which], device))
                    for kind in calls:
                        last[kind] = (T, 1e-3 * (times[kind]["fwd"][-1] + times[kind]["fwd_bwd"][-1]))
                    if time.perf_counter() - group_start > share and rep + 1 < cfg["repeats"]:
                        skipped.append(f"ops {precision} D={D} T={T}: {rep + 1} of {cfg['repeats']} rounds "
                                       f"(share of the budget {share:.0f} s spent)")  # fmt: skip
                        print(f"  cut: {skipped[-1]}", flush=True)
                        break
                group = []
                for kind, fns in calls.items():
                    row = {"op": kind, "precision": precision, "B": B, "H": H, "D": D, "T": T}
                    row["runs"] = len(times[kind]["fwd"])
                    for which in ("fwd", "fwd_bwd"):
                        row[f"{which}_ms"] = statistics.median(times[kind][which])
                    fns["clear_grads"]()
                    row["peak_mib"] = peak_memory_mb(fns["fwd_bwd_fresh"], device) if device.type == "cuda" else None
                    group.append(row)
                sdpa = next((r for r in group if r["op"] == "softmax (SDPA)"), None)
                for row in group:
                    for which in ("fwd", "fwd_bwd"):
                        row[f"{which}_ratio_sdpa"] = row[f"{which}_ms"] / sdpa[f"{which}_ms"] if sdpa else None
                    print(f"  {row['op']:30s} {precision:8s} D={D} T={T:6d} fwd {row['fwd_ms']:9.2f} ms  "
                          f"fwd+bwd {row['fwd_bwd_ms']:9.2f} ms  x SDPA {fmt(row['fwd_bwd_ratio_sdpa'], '.2f')}",
                          flush=True)  # fmt: skip
                rows += group
    return rows


def op_calls(kind: str, B: int, T: int, H: int, D: int, dtype: torch.dtype, device: torch.device) -> dict:
    """The calls of op `kind` on fresh inputs, under bf16 autocast for bf16 inputs: fwd (no grad), fwd+bwd, and
    fwd+bwd without clearing the gradients first (for the memory peak: clear_grads runs before, outside it)."""
    args = reference_check.inputs(kind, B, T, H, D, dtype, device)
    leaves = [t.requires_grad_() for t in args.values()]
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)

    def fwd():
        with torch.no_grad(), torch.autocast(**autocast):
            reference_check.call(kind, args, D)

    def clear_grads():
        for t in leaves:
            t.grad = None

    def fwd_bwd_fresh():
        with torch.autocast(**autocast):
            out = reference_check.call(kind, args, D)
        out.float().sum().backward()

    def fwd_bwd():
        clear_grads()
        fwd_bwd_fresh()

    return {"fwd": fwd, "fwd_bwd": fwd_bwd, "fwd_bwd_fresh": fwd_bwd_fresh, "clear_grads": clear_grads}


def bench_models(cfg: dict, device: torch.device, budget: Budget, skipped: list[str]) -> list[dict]:
    """Training tokens per second of the default presets against their Llama twins, per (precision, T)."""
    rows = []
    for precision in PRECISIONS:
        autocast = torch.bfloat16 if precision == "bfloat16" else None
        last: dict = {}
        for T in cfg["model_lengths"]:
            share = budget.next_share()
            batch = cfg["tokens_per_step"] // T
            # Steps of equal tokens: the cost grows with T through attention only, so the quadratic guess is generous.
            why = too_costly(last, "round", T, budget)
            if why:
                skipped.append(f"model {precision} T={T}: {why}")
                print(f"  skipped: {skipped[-1]}", flush=True)
                continue
            print(f"model, {precision}, T={T}, batch {batch}", flush=True)
            try:
                group = compare_at_length(
                    DEFAULT_PRESETS, T, batch, cfg["rounds"], device, autocast, seconds=share,
                    overrides=cfg["model_overrides"], log=lambda s: print(s, flush=True),
                )  # fmt: skip
            except torch.cuda.OutOfMemoryError:
                skipped.append(f"model {precision} T={T}: out of memory")
                print(f"  skipped: {skipped[-1]}", flush=True)
                torch.cuda.empty_cache()
                continue
            if any(r["rounds"] < cfg["rounds"] for r in group):
                skipped.append(f"model {precision} T={T}: {group[0]['rounds']} of {cfg['rounds']} rounds (share of "
                               f"the budget {share:.0f} s spent)")  # fmt: skip
            last["round"] = (T, 1e-3 * sum(r["step_ms"] + r["llama_step_ms"] for r in group))
            rows += group
    return rows


def ops_table(rows: list[dict]) -> str:
    lines = [
        "| op | precision | D | T | fwd ms | fwd / SDPA | fwd+bwd ms | fwd+bwd / SDPA | peak MiB (fwd+bwd) | runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['op']} | {r['precision']} | {r['D']} | {r['T']} | {r['fwd_ms']:.2f} "
            f"| {fmt(r['fwd_ratio_sdpa'], '.2f')} "
            f"| {r['fwd_bwd_ms']:.2f} | {fmt(r['fwd_bwd_ratio_sdpa'], '.2f')} | {fmt(r['peak_mib'])} | {r['runs']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default; the full form) or cpu (the smoke form)")
    p.add_argument("--smoke", action="store_true", help="tiny shapes and model, seconds (implied by --device cpu)")
    p.add_argument("--budget-s", type=float, default=None,
                   help=f"seconds for the timed parts (default {FULL['budget_s']:.0f}; smoke {SMOKE['budget_s']:.0f})")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's own; 1 for the smoke form on CPU, robust to a busy CPU)")
    p.add_argument("--skip", nargs="+", default=[], choices=["checks", "ops", "model"], help="parts to leave out")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON of every row (default benchmarks/results/gpu_check-<device>[-smoke].json)")  # fmt: skip
    a = p.parse_args(argv)
    try:
        device = torch.device(a.device)
    except RuntimeError:
        p.exit(2, f"gpu_check.py: --device {a.device!r} is not a device; use cuda or cpu\n")
    if device.type not in ("cuda", "cpu"):
        p.exit(2, f"gpu_check.py: --device {a.device!r} is not supported; use cuda or cpu\n")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.exit(2, "gpu_check.py: --device cuda but torch sees no CUDA device; run --device cpu for the smoke form\n")
    smoke = a.smoke or device.type == "cpu"
    cfg = dict(SMOKE if smoke else FULL)
    if a.budget_s is not None:
        if not a.budget_s > 0 or not math.isfinite(a.budget_s):
            p.exit(2, f"gpu_check.py: --budget-s {a.budget_s} must be a positive number of seconds\n")
        cfg["budget_s"] = a.budget_s
    if a.threads is not None and a.threads < 1:
        p.exit(2, f"gpu_check.py: --threads {a.threads} must be >= 1\n")
    if a.threads or (smoke and device.type == "cpu"):
        torch.set_num_threads(a.threads or 1)
    start = time.perf_counter()
    info = machine_info(device)
    info["form"] = "smoke" if smoke else "full"
    if device.type == "cuda":
        info["sdpa_backends_enabled"] = {
            "flash": torch.backends.cuda.flash_sdp_enabled(),
            "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "cudnn": torch.backends.cuda.cudnn_sdp_enabled(),
        }
    print(json.dumps(info), flush=True)
    print(f"{info['form']} form on {info.get('gpu', info['cpu'])}; budget of the timed parts {cfg['budget_s']:.0f} s")
    result: dict = {"machine": info, "config": {k: v for k, v in cfg.items()}, "skipped": []}
    if "checks" not in a.skip:
        print(f"\nreference checks, shape (B, T, H, D) = {cfg['check_shape']}, chunk {cfg['check_chunk']}", flush=True)
        checks = []
        for precision in PRECISIONS[::-1]:
            for kind in reference_check.CHECKED_OPS:
                checks.append(reference_check.check_op(kind, precision, cfg["check_shape"], cfg["check_chunk"], device))
                r = checks[-1]
                print(f"  {kind:30s} {precision:8s} output {r['output_error']:.1e}  gradients "
                      f"{r['gradient_errors'][r['worst_gradient']]:.1e}  {'pass' if r['ok'] else 'FAIL'}", flush=True)
        result["checks"] = checks
    parts = [x for x in ("ops", "model") if x not in a.skip]
    groups = ("ops" in parts) * len(PRECISIONS) * len(cfg["dims"]) * len(cfg["lengths"])
    groups += ("model" in parts) * len(PRECISIONS) * len(cfg["model_lengths"])
    budget = Budget(cfg["budget_s"], groups)
    if "ops" in parts:
        print(f"\nops, B={cfg['batch']} H={cfg['heads']}, chunk size = D", flush=True)
        result["ops"] = bench_ops(cfg, device, budget, result["skipped"])
    if "model" in parts:
        print(f"\nmodel training step, {cfg['tokens_per_step']} tokens per step", flush=True)
        result["model"] = bench_models(cfg, device, budget, result["skipped"])
    info["loadavg_end"] = os.getloadavg()
    info["seconds"] = time.perf_counter() - start
    print(f"\n## GPU check ({info['form']} form): {info.get('gpu', info['cpu'])}, torch {info['torch']}, "
          f"transformers {info.get('transformers')}, {info['date']}, {info['seconds']:.0f} s\n")  # fmt: skip
    if "checks" in result:
        passed = sum(r["ok"] for r in result["checks"])
        print(f"Reference checks, (B, T, H, D) = {tuple(cfg['check_shape'])}, chunk {cfg['check_chunk']}: relative "
              f"Frobenius errors against float64 on the device; {passed} of {len(result['checks'])} pass.\n")
        print(reference_check.markdown_table(result["checks"]) + "\n")
    if result.get("ops"):
        print(f"Ops, B = {cfg['batch']}, H = {cfg['heads']}, chunk size = D, median ms:\n")
        print(ops_table(result["ops"]) + "\n")
    if result.get("model"):
        print(f"Model training step, {cfg['tokens_per_step']} tokens per step (batch = tokens / T):\n")
        print(model_table(result["model"]) + "\n")
    if result["skipped"]:
        print("Skipped or cut to fit the time budget:\n")
        print("\n".join(f"- {s}" for s in result["skipped"]) + "\n")
    out = a.out or Path(__file__).parent / "results" / f"gpu_check-{device.type}{'-smoke' if smoke else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0 if all(r["ok"] for r in result.get("checks", [])) else 1


if __name__ == "__main__":
    sys.exit(main())
