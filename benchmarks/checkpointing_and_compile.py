"""Gradient checkpointing (memory, exactness) and torch.compile (training-step speed) of a mixed MesaForCausalLM.

    .venv/bin/python benchmarks/checkpointing_and_compile.py            # about 5 minutes on 2 cores (compile included)
    .venv/bin/python benchmarks/checkpointing_and_compile.py --quick    # tiny shapes, a smoke run

Prints two tables and writes the JSON to --output. Not part of the test suite: the tests check that checkpointing gives
the plain gradients and that the compiled graph has no break; this measures what they buy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import median_time, peak_memory_mb  # noqa: E402
from run import machine_info  # noqa: E402

from mesa_lm import MesaConfig, MesaForCausalLM  # noqa: E402
from mesa_lm.models.mesa.hf_compat import enable_activation_checkpointing  # noqa: E402

MIXERS = ["softmax", "linear", "mesa", "mesa"]


def build_model(a: argparse.Namespace, device: torch.device) -> MesaForCausalLM:
    config = MesaConfig(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        num_attention_heads=a.hidden // 64 if a.hidden >= 64 else 1,
        mixer_types=MIXERS,
        mesa_gate="data",
        mesa_lambda_type="diagonal",
        linear_gate=True,
        max_position_embeddings=max(a.seq_len, 1024),
    )
    torch.manual_seed(0)
    return MesaForCausalLM(config).to(device).train()


def checkpointing(a: argparse.Namespace, device: torch.device) -> dict:
    """Peak memory of one fwd+bwd with and without checkpointing, and the largest relative gradient difference."""
    model = build_model(a, device)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq_len), device=device)

    def step():
        model(ids, labels=ids).loss.backward()

    def grads():
        return {n: p.grad.detach().clone() for n, p in model.named_parameters()}

    model.zero_grad(set_to_none=True)
    plain_peak = peak_memory_mb(step, device)
    plain = grads()
    model.zero_grad(set_to_none=True)
    enable_activation_checkpointing(model)
    ckpt_peak = peak_memory_mb(step, device)
    rel = max(((p.grad - plain[n]).abs().max() / plain[n].abs().max()).item() for n, p in model.named_parameters())
    parameter_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    return {
        "plain_peak_mb": plain_peak,
        "checkpointed_peak_mb": ckpt_peak,
        "gradient_mb": parameter_mb,  # the gradients are part of both peaks
        "activation_reduction": 1 - (ckpt_peak - parameter_mb) / (plain_peak - parameter_mb),
        "total_reduction": 1 - ckpt_peak / plain_peak,
        "max_relative_gradient_difference": rel,
    }


def compiled_step(a: argparse.Namespace, device: torch.device) -> dict:
    """Median time of a training step (forward, loss, backward, AdamW) eager and under torch.compile."""
    model = build_model(a, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, a.vocab, (a.batch, a.compile_seq_len), device=device)

    def loss_fn(x):
        return model(x, labels=x, use_cache=False).loss

    compiled_loss = torch.compile(loss_fn, fullgraph=True)

    def train_step(fn):
        def run():
            fn(ids).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return run

    start = time.perf_counter()
    train_step(compiled_loss)()
    compile_s = time.perf_counter() - start
    train_step(loss_fn)()  # warm-up
    # Interleaved rounds (one eager and one compiled step each), so a change of machine load hits both alike.
    times = {"eager": [], "compiled": []}
    for _ in range(a.repeats):
        for name, fn in (("eager", loss_fn), ("compiled", compiled_loss)):
            times[name].append(median_time(train_step(fn), 1, device, warmup=0)["median_ms"])
    eager, compiled = statistics.median(times["eager"]), statistics.median(times["compiled"])
    tokens = a.batch * a.compile_seq_len
    return {
        "compile_s": compile_s,
        "eager_ms": eager,
        "compiled_ms": compiled,
        "eager_tokens_per_s": tokens / eager * 1e3,
        "compiled_tokens_per_s": tokens / compiled * 1e3,
        "speedup": eager / compiled,
        "rounds": times,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq_len", type=int, default=1024, help="tokens per row for the checkpointing measurement")
    p.add_argument("--compile_seq_len", type=int, default=512, help="tokens per row for the compile measurement")
    p.add_argument("--batch", type=int, default=2, help="rows per step")
    p.add_argument("--hidden", type=int, default=256, help="model width (heads of 64)")
    p.add_argument("--vocab", type=int, default=4096, help="vocabulary size")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per measurement (median)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--quick", action="store_true", help="tiny shapes and 2 repeats: a smoke run")
    p.add_argument("--output", default="benchmarks/results/checkpointing_and_compile.json", help="where to write JSON")
    a = p.parse_args(argv)
    if a.quick:
        a.seq_len, a.compile_seq_len, a.hidden, a.vocab, a.repeats = 64, 32, 64, 256, 2
    device = torch.device(a.device)
    result = {"machine": machine_info(device), "args": vars(a)}
    ck = result["checkpointing"] = checkpointing(a, device)
    print(f"gradient checkpointing, {MIXERS}, batch {a.batch} x {a.seq_len} tokens, width {a.hidden}")
    print(f"  peak memory of fwd+bwd   plain {ck['plain_peak_mb']:.1f} MiB   checkpointed {ck['checkpointed_peak_mb']:.1f} MiB")
    print(f"  activation memory lower by {ck['activation_reduction']:.1%} (total peak by {ck['total_reduction']:.1%})")
    print(f"  largest relative gradient difference {ck['max_relative_gradient_difference']:.2e}")
    cs = result["compile"] = compiled_step(a, device)
    print(f"torch.compile(fullgraph=True) training step, batch {a.batch} x {a.compile_seq_len} tokens")
    print(f"  first compiled step (compilation) {cs['compile_s']:.1f} s")
    print(
        f"  median of {a.repeats} interleaved rounds: eager {cs['eager_ms']:.1f} ms   compiled {cs['compiled_ms']:.1f} ms"
        f"   speed-up x{cs['speedup']:.2f}"
    )
    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    with open(a.output, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
