"""Benchmarks of the sequence mixers and of a whole-model training step; prints tables and writes JSON.

    .venv/bin/python benchmarks/run.py                      # everything (about 15-25 min on a 2-core CPU)
    .venv/bin/python benchmarks/run.py --quick              # a small subset, for a smoke test
    .venv/bin/python benchmarks/run.py --sections ops --dims 32 --lengths 1024 4096

Sections:
  ops     forward and forward+backward time and peak memory of each mixer at B = 4, H = 4, D in --dims, T in --lengths,
          with ratios to softmax attention (SDPA) from the same run.
  decode  per-token latency of one decoding step at contexts 256, 1024, 4096: op level (SDPA over a key/value cache,
          mesa and linear steps from a state) and layer level (the model's mixers with their caches, projections
          included).
  model   one training step (forward, loss, backward, AdamW) of a softmax-only MesaForCausalLM against transformers'
          LlamaForCausalLM of the same architecture (SwiGLU, RMSNorm, RoPE, no bias, tied embeddings, SDPA), as
          tokens per second. (`presets_vs_llama.py` does the same for the presets, mesa layers included.)
Not part of the test suite. Times are medians over --repeats runs after a warm-up run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import peak_memory_mb, timed  # noqa: E402

from mesa_lm.ops import (  # noqa: E402
    linear_attention,
    linear_attention_step,
    mesa_attention,
    mesa_attention_naive,
    mesa_attention_step,
    softmax_attention,
)

# Rows of the ops table: name -> (description, kind); kind picks inputs and call.
OP_ROWS = {
    "softmax (SDPA)": "causal softmax attention, torch SDPA (the baseline of every ratio)",
    "mesa chunked": "mesa, no gates, exact Woodbury chunked path (method='woodbury', the default without gamma)",
    "mesa gated chunked (cg_exact)": "mesa with gamma and beta, exact CG to float rounding (method='cg_exact', the default)",
    "mesa gated chunked (cholesky)": "mesa with gamma and beta, exact per-position Cholesky (method='cholesky')",
    "mesa gated chunked (cg)": "mesa with gamma and beta, conjugate gradient to relative residual 1e-5 (method='cg')",
    "mesa sequential reference": "mesa_attention_naive: loop over t carrying H_t, G_t, one torch.linalg.solve per step",
    "linear chunked": "linear attention, no gate, chunked",
    "linear gated chunked": "linear attention with gamma, chunked",
}


def machine_info(device: torch.device) -> dict:
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def op_inputs(kind: str, B: int, T: int, H: int, D: int, dtype: torch.dtype, device: torch.device, seed: int = 0):
    """Inputs as a language model feeds them: L2-normalised q and k, gates near [P3]'s initialisation."""
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    q, k, v = F.normalize(rnd(B, T, H, D), dim=-1), F.normalize(rnd(B, T, H, D), dim=-1), rnd(B, T, H, D)
    args = {"q": q, "k": k, "v": v}
    if kind.startswith("mesa"):
        gated = "gated" in kind
        # [P1]'s scalar lambda_h per head without gates, [P3]'s diagonal Lambda with them; both start at I.
        args["lam"] = torch.ones(H, D, device=device) if gated else torch.ones(H, device=device)
        if gated:
            args["gamma"] = (0.9 + 0.1 * torch.rand(B, T, H, generator=gen)).to(device)
            args["beta"] = (0.5 + 0.5 * torch.rand(B, T, H, generator=gen)).to(device)
    elif kind == "linear gated chunked":
        args["gamma"] = (0.9 + 0.1 * torch.rand(B, T, H, generator=gen)).to(device)
    return args


def op_call(kind: str, args: dict, chunk_size: int):
    if kind == "softmax (SDPA)":
        return softmax_attention(args["q"], args["k"], args["v"])
    if kind == "mesa chunked":
        return mesa_attention(**args, chunk_size=chunk_size, method="woodbury")
    if kind == "mesa gated chunked (cg_exact)":
        return mesa_attention(**args, chunk_size=chunk_size, method="cg_exact")
    if kind == "mesa gated chunked (cholesky)":
        return mesa_attention(**args, chunk_size=chunk_size, method="cholesky")
    if kind == "mesa gated chunked (cg)":
        return mesa_attention(**args, chunk_size=chunk_size, method="cg")
    if kind == "mesa sequential reference":
        return mesa_attention_naive(**args)
    if kind.startswith("linear"):
        return linear_attention(**args, chunk_size=chunk_size)
    raise ValueError(kind)


def bench_ops(a: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> list[dict]:
    """Per shape, all mixers are timed in interleaved rounds (one run of each per round), so that a change in machine
    load during the shape's measurement hits every mixer alike and the ratios to SDPA stay comparable."""
    B, H = 4, 4
    rows = []
    for D in a.dims:
        chunk = a.chunk_size or D
        for T in a.lengths:
            kinds = [k for k in a.rows if not (k == "mesa sequential reference" and T > a.naive_max_len)]
            kinds.sort(key=lambda k: k != "softmax (SDPA)")  # the baseline first, for the ratios
            calls = {}
            for kind in kinds:
                args = op_inputs(kind, B, T, H, D, dtype, device)
                leaves = [t.requires_grad_() for t in args.values()]

                def fwd(kind=kind, args=args):
                    with torch.no_grad():
                        op_call(kind, args, chunk)

                def fwd_bwd(kind=kind, args=args, leaves=leaves):
                    for t in leaves:
                        t.grad = None
                    op_call(kind, args, chunk).float().sum().backward()

                def fwd_bwd_fresh(kind=kind, args=args):
                    # For the memory profile: gradients are cleared beforehand, outside the profiled region, so that
                    # no tensor from before is freed inside it and every new gradient counts.
                    op_call(kind, args, chunk).float().sum().backward()

                slow = kind == "mesa sequential reference" and T >= 1024
                calls[kind] = (fwd, fwd_bwd, fwd_bwd_fresh, leaves, a.naive_repeats if slow else a.repeats, slow)
            load = os.getloadavg()[0]
            times = {kind: {"fwd": [], "fwd_bwd": []} for kind in kinds}
            for kind, (fwd, fwd_bwd, _, _, _, slow) in calls.items():
                if not slow:  # warm-up (the slow reference has no start-up cost worth a run)
                    fwd()
                    fwd_bwd()
            for rep in range(a.repeats):
                for which in ("fwd", "fwd_bwd"):
                    for kind, (fwd, fwd_bwd, _, _, reps, _) in calls.items():
                        if rep < reps:
                            times[kind][which].append(timed(fwd if which == "fwd" else fwd_bwd, device))
            sdpa = None
            for kind, (_, _, fwd_bwd_fresh, leaves, _, _) in calls.items():
                row = {"mixer": kind, "B": B, "H": H, "D": D, "T": T, "dtype": a.dtype, "chunk_size": chunk}
                row["loadavg_1min_at_start"] = load
                for which in ("fwd", "fwd_bwd"):
                    row[which] = summary(times[kind][which])
                measure_mem = not (kind == "mesa sequential reference" and T > a.naive_mem_max_len)
                for t in leaves:
                    t.grad = None
                row["fwd_bwd_peak_mb"] = peak_memory_mb(fwd_bwd_fresh, device) if measure_mem else None
                if kind == "softmax (SDPA)":
                    sdpa = row
                if sdpa is not None:
                    row["fwd_ratio_sdpa"] = row["fwd"]["median_ms"] / sdpa["fwd"]["median_ms"]
                    row["fwd_bwd_ratio_sdpa"] = row["fwd_bwd"]["median_ms"] / sdpa["fwd_bwd"]["median_ms"]
                rows.append(row)
                print_op_row(row, flush=True)
    return rows


def summary(ts: list[float]) -> dict:
    return {"median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts), "runs": len(ts)}


def fmt(x, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def print_op_header() -> None:
    print(
        f"{'mixer':32s} {'D':>3s} {'T':>5s} {'fwd ms':>9s} {'x SDPA':>7s} {'f+b ms':>9s} {'x SDPA':>7s} "
        f"{'peak MiB':>9s} {'runs':>4s}"
    )


def print_op_row(r: dict, flush: bool = False) -> None:
    print(
        f"{r['mixer']:32s} {r['D']:3d} {r['T']:5d} {r['fwd']['median_ms']:9.1f} "
        f"{fmt(r.get('fwd_ratio_sdpa'), '.2f'):>7s} "
        f"{r['fwd_bwd']['median_ms']:9.1f} {fmt(r.get('fwd_bwd_ratio_sdpa'), '.2f'):>7s} "
        f"{fmt(r.get('fwd_bwd_peak_mb')):>9s} {r['fwd']['runs']:4d}",
        flush=flush,
    )


def bench_decode(a: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> list[dict]:
    """Per-token latency of one decoding step, op level and layer level; all (mixer, context) pairs are timed in
    interleaved rounds (in a random order), so that machine-load changes hit every context alike."""
    from mesa_lm.layers.linear_attention import LinearAttention
    from mesa_lm.layers.mesa_layer import MesaLayer
    from mesa_lm.layers.softmax_attention import SoftmaxAttention
    from mesa_lm.models.mesa import MesaConfig
    from mesa_lm.models.mesa.cache_mesa import LayerCache

    B, H, D = 4, 4, 32
    hidden = H * D
    gen = torch.Generator().manual_seed(1)
    layers = {}
    for name, cls, cfg in (
        ("softmax layer (KV cache)", SoftmaxAttention, {}),
        ("mesa layer (state)", MesaLayer, {}),
        ("mesa layer, gated (state)", MesaLayer, {"mesa_gate": "data", "mesa_lambda_type": "diagonal"}),
        ("linear layer (state)", LinearAttention, {}),
    ):
        config = MesaConfig(vocab_size=None, hidden_size=hidden, num_attention_heads=H, mixer_types=["softmax"], **cfg)
        layers[name] = cls(config, 0).to(device).eval()
    calls = {}  # (level, mixer, context) -> step function
    for ctx in a.contexts:
        # Op level: the state (or cache) of a context of length ctx, then one new token.
        q1, k1, v1 = (torch.randn(B, 1, H, D, generator=gen).to(device, dtype) for _ in range(3))
        kc, vc = (torch.randn(B, ctx, H, D, generator=gen).to(device, dtype) for _ in range(2))
        lam = torch.ones(H, device=device)
        h = torch.randn(B, H, D, D, generator=gen).to(device)
        h = h @ h.transpose(-1, -2) / D
        g = torch.randn(B, H, D, D, generator=gen).to(device)
        gate = torch.full((B, 1, H), 0.95, device=device)

        def sdpa_step(q1=q1, k1=k1, v1=v1, kc=kc, vc=vc):
            # A KV cache: append the new key and value, then attend over the whole context.
            return softmax_attention(q1, torch.cat([kc, k1], 1), torch.cat([vc, v1], 1))

        calls[("op", "softmax (SDPA, KV cache)", ctx)] = sdpa_step
        calls[("op", "mesa step (state)", ctx)] = lambda q1=q1, k1=k1, v1=v1, h=h, g=g: mesa_attention_step(
            q1, k1, v1, lam, initial_state=(h, g)
        )
        calls[("op", "mesa gated step (state)", ctx)] = lambda q1=q1, k1=k1, v1=v1, h=h, g=g: mesa_attention_step(
            q1, k1, v1, lam, gate, gate, initial_state=(h, g)
        )
        calls[("op", "linear step (state)", ctx)] = lambda q1=q1, k1=k1, v1=v1, g=g: linear_attention_step(
            q1, k1, v1, initial_state=g
        )
        # Layer level: the model's mixers (projections included) with their caches after a prefill of ctx tokens.
        x = torch.randn(B, ctx, hidden, generator=gen).to(device, dtype)
        x1 = torch.randn(B, 1, hidden, generator=gen).to(device, dtype)
        pos = torch.full((B, 1), ctx, device=device)
        for name, layer in layers.items():
            cache = LayerCache()
            with torch.no_grad():
                layer(x, None, torch.arange(ctx, device=device).expand(B, ctx), cache)
            base = dict(cache.tensors)

            def step(layer=layer, cache=cache, base=base, pos=pos, x1=x1):
                cache.tensors = dict(base)  # the same context every time
                return layer(x1, None, pos, cache)

            calls[("layer", name, ctx)] = step
    times = {key: [] for key in calls}
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for fn in calls.values():
            for _ in range(3):
                fn()
        order = list(calls)
        shuffle = random.Random(0).shuffle
        for _ in range(a.decode_repeats):
            # A fresh random order each round: a step that follows a long-context softmax step (which sweeps the
            # caches with its key/value copies) is slowed whatever its own context; shuffling spreads that evenly.
            shuffle(order)
            for key in order:
                times[key].append(timed(calls[key], device))
    rows = []
    for (level, mixer, ctx), ts in times.items():
        step = {"median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts), "runs": len(ts)}
        rows.append({"level": level, "mixer": mixer, "context": ctx, "B": B, "H": H, "D": D, "step": step})
    for r in rows:
        first = next(x for x in rows if x["level"] == r["level"] and x["mixer"] == r["mixer"])
        r["ratio_to_shortest_context"] = r["step"]["median_ms"] / first["step"]["median_ms"]
    print(f"\n{'level':6s} {'mixer':28s} " + " ".join(f"{'ctx ' + str(c):>11s}" for c in a.contexts) + "  max/min ctx")
    for level in ("op", "layer"):
        for name in dict.fromkeys(r["mixer"] for r in rows if r["level"] == level):
            rs = {r["context"]: r for r in rows if r["level"] == level and r["mixer"] == name}
            cells = " ".join(f"{rs[c]['step']['median_ms'] * 1e3:9.0f}us" for c in a.contexts)
            print(f"{level:6s} {name:28s} {cells}  {rs[max(rs)]['ratio_to_shortest_context']:.2f}")
    return rows


def bench_model(a: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict:
    """Tokens per second of one training step: softmax-only MesaForCausalLM vs LlamaForCausalLM, same architecture.
    (The presets, mesa layers included, against their Llama twins: `presets_vs_llama.py`.)"""
    from transformers import LlamaForCausalLM

    from mesa_lm.models.mesa import MesaConfig
    from mesa_lm.models.mesa.modeling_mesa import MesaForCausalLM
    from model_step import llama_twin, parameter_count, training_step

    V, hidden, layers, heads, inter = 8192, 256, 4, 4, 688
    B, T = a.model_batch, a.model_len
    mesa_cfg = MesaConfig(
        vocab_size=V, hidden_size=hidden, num_attention_heads=heads, mixer_types=["softmax"] * layers,
        mlp_type="swiglu", norm_type="rmsnorm", position_type="rope", use_bias=False, tie_word_embeddings=True,
        intermediate_size=inter, norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=max(1024, T),
    )  # fmt: skip
    torch.manual_seed(0)
    models = {
        "MesaForCausalLM (softmax)": MesaForCausalLM(mesa_cfg),
        "LlamaForCausalLM": LlamaForCausalLM(llama_twin(mesa_cfg, T)),
    }
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(2)).to(device)
    autocast = None if dtype == torch.float32 else dtype
    steps = {name: training_step(model.to(device), ids, autocast) for name, model in models.items()}
    out = {"batch": B, "length": T, "params": {n: parameter_count(m) for n, m in models.items()}}
    # Interleave the two models' runs so that drifting machine load hits both alike.
    times = {name: [] for name in steps}
    for step in steps.values():
        step()
    for _ in range(a.model_repeats):
        for name, step in steps.items():
            times[name].append(timed(step, device))
    for name, ts in times.items():
        med = statistics.median(ts)
        out[name] = {**summary(ts), "tokens_per_s": B * T / med * 1e3}
    mesa_name, llama_name = list(models)
    out["tokens_per_s_ratio_mesa_over_llama"] = out[mesa_name]["tokens_per_s"] / out[llama_name]["tokens_per_s"]
    print(f"\nmodel training step, B={B} T={T}, {out['params'][mesa_name]} vs {out['params'][llama_name]} parameters")
    for name in models:
        print(f"  {name:28s} {out[name]['median_ms']:8.1f} ms  {out[name]['tokens_per_s']:8.0f} tokens/s")
    print(f"  ratio (Mesa / Llama tokens per second): {out['tokens_per_s_ratio_mesa_over_llama']:.3f}")
    return out


def check_targets(result: dict) -> list[dict]:
    """The issue's targets, evaluated on this run's numbers (float32, B=4, H=4; D=32 unless stated)."""
    out = []

    def add(name: str, value, limit: float, better: str) -> None:
        met = None if value is None else (value <= limit if better == "<=" else value >= limit)
        out.append({"target": name, "value": value, "limit": f"{better} {limit}", "met": met})

    ops = result.get("ops", [])

    def op(mixer: str, D: int, T: int, key: str = "fwd_bwd"):
        for r in ops:
            if r["mixer"] == mixer and r["D"] == D and r["T"] == T:
                return r if key == "row" else r[key]["median_ms"]
        return None

    if ops:
        for D in sorted({r["D"] for r in ops}):
            suffix = "" if D == 32 else f" (D={D}, not a target)"
            for T, limit in ((1024, 1.5), (4096, 0.5)):
                r = op("mesa chunked", D, T, "row")
                add(f"mesa fwd+bwd / SDPA at T={T}{suffix}", r and r.get("fwd_bwd_ratio_sdpa"), limit, "<=")
            naive, fast = op("mesa sequential reference", D, 4096), op("mesa chunked", D, 4096)
            add(f"sequential reference / mesa chunked, fwd+bwd at T=4096{suffix}", naive and fast and naive / fast, 5,
                ">=")  # fmt: skip
            for mixer in ("mesa chunked", "linear chunked"):
                for key in ("fwd_bwd", "fwd"):
                    t1, t4 = op(mixer, D, 1024, key), op(mixer, D, 4096, key)
                    add(f"{mixer} {key} time(T=4096) / time(T=1024){suffix}", t1 and t4 and t4 / t1, 4.6, "<=")
            m, li = op("mesa chunked", D, 4096, "row"), op("linear chunked", D, 4096, "row")
            pm, pl = m and m["fwd_bwd_peak_mb"], li and li["fwd_bwd_peak_mb"]
            ratio = pm / pl if pm and pl else None
            add(f"peak memory mesa / linear, fwd+bwd at T=4096{suffix}", ratio, 1.5, "<=")
        # Issue 14: the gated layer's fast exact path, gated CG, the ungated path one step further, memory.
        gated_exact, gated_cg = "mesa gated chunked (cg_exact)", "mesa gated chunked (cg)"
        for D in sorted({r["D"] for r in ops}):
            for T, limit in ((1024, 1.5), (4096, 0.5)):
                r = op(gated_exact, D, T, "row")
                add(f"gated exact (cg_exact) fwd+bwd / SDPA, D={D}, T={T}", r and r.get("fwd_bwd_ratio_sdpa"), limit,
                    "<=")  # fmt: skip
            r = op(gated_cg, D, 1024, "row")
            add(f"gated cg (default tolerance) fwd+bwd / SDPA, D={D}, T=1024", r and r.get("fwd_bwd_ratio_sdpa"), 1.0,
                "<=")  # fmt: skip
            for T, limit in ((1024, 0.8 if D == 32 else 1.0), (4096, 0.3 if D == 32 else None)):
                r = op("mesa chunked", D, T, "row")
                if limit is not None:
                    add(f"ungated fwd+bwd / SDPA, D={D}, T={T}", r and r.get("fwd_bwd_ratio_sdpa"), limit, "<=")
            for T in sorted({r["T"] for r in ops if r["D"] == D}):
                li = op("linear chunked", D, T, "row")
                for mixer in ("mesa chunked", gated_exact, gated_cg):
                    m = op(mixer, D, T, "row")
                    pm, pl = m and m["fwd_bwd_peak_mb"], li and li["fwd_bwd_peak_mb"]
                    if m is not None:
                        add(f"peak memory {mixer.replace('mesa ', '')} / linear, D={D}, T={T}",
                            pm / pl if pm and pl else None, 1.5, "<=")  # fmt: skip
    dec = [r for r in result.get("decode", []) if r["level"] == "layer"]
    for mixer in ("mesa layer (state)", "mesa layer, gated (state)", "linear layer (state)"):
        rs = {r["context"]: r["step"]["median_ms"] for r in dec if r["mixer"] == mixer}
        if 256 in rs and 4096 in rs:
            add(f"{mixer}: step latency ctx 4096 / ctx 256", rs[4096] / rs[256], 1.2, "<=")
    if "model" in result:
        ratio = result["model"]["tokens_per_s_ratio_mesa_over_llama"]
        add("MesaForCausalLM / LlamaForCausalLM tokens per second", ratio, 0.95, ">=")
    print("\ntargets")
    for t in out:
        value = "-" if t["value"] is None else f"{t['value']:.3f}"
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        print(f"  {t['target']:64s} {value:>8s}  (target {t['limit']})  {verdict}")
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", default=["ops", "decode", "model"], choices=["ops", "decode", "model"])
    p.add_argument("--quick", action="store_true", help="small subset: D=32, T in {256, 1024}, 3 repeats")
    p.add_argument("--dims", nargs="+", type=int, default=[32, 64])
    p.add_argument("--lengths", nargs="+", type=int, default=[256, 1024, 4096])
    p.add_argument("--rows", nargs="+", default=list(OP_ROWS), choices=list(OP_ROWS), metavar="MIXER")
    p.add_argument("--contexts", nargs="+", type=int, default=[256, 1024, 4096])
    p.add_argument("--chunk-size", type=int, default=None, help="chunk length of the chunked ops (default: = D)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median reported)")
    p.add_argument("--naive-repeats", type=int, default=2, help="timed runs of the sequential reference at T>=1024")
    p.add_argument("--naive-max-len", type=int, default=4096, help="skip the sequential reference above this T")
    p.add_argument("--naive-mem-max-len", type=int, default=1024, help="memory of the reference only up to this T")
    p.add_argument("--decode-repeats", type=int, default=50)
    p.add_argument("--model-batch", type=int, default=8)
    p.add_argument("--model-len", type=int, default=512)
    p.add_argument("--model-repeats", type=int, default=11)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own, 2 on 2 cores)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/<device>[-bf16].json)")
    a = p.parse_args(argv)
    if a.quick:
        a.dims, a.lengths, a.contexts = [32], [256, 1024], [256, 1024]
        a.repeats, a.model_repeats, a.decode_repeats = 3, 3, 20
    if a.threads:
        torch.set_num_threads(a.threads)
    device, dtype = torch.device(a.device), getattr(torch, a.dtype)
    info = machine_info(device)
    print(json.dumps(info))
    for name, desc in OP_ROWS.items():
        print(f"  {name}: {desc}")
    result: dict = {"machine": info, "args": vars(a), "rows_description": OP_ROWS}
    if "ops" in a.sections:
        print(f"\nops, B=4 H=4, {a.dtype}, chunk_size={a.chunk_size or 'D'}; forward under no_grad; peak = fwd+bwd")
        print_op_header()
        result["ops"] = bench_ops(a, device, dtype)
    if "decode" in a.sections:
        result["decode"] = bench_decode(a, device, dtype)
    if "model" in a.sections:
        result["model"] = bench_model(a, device, dtype)
    result["targets"] = check_targets(result)
    info["loadavg_end"] = os.getloadavg()
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / (
        f"{device.type}{'' if dtype == torch.float32 else '-bf16'}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out}; load average start {info['loadavg_start']}, end {info['loadavg_end']}")
    return result


if __name__ == "__main__":
    main()
