"""Before/after timing of the ops against another checkout, interleaved in one process.

    .venv/bin/python benchmarks/compare.py --base ../other-checkout --lengths 1024 4096 --repeats 15

Loads `mesa_lm/ops` of `--base` under another name beside this checkout's, and times fwd+bwd of SDPA, the default
mesa path without and with gates, and linear attention from both, in rounds of one run of each (shuffled per round),
so that a change of machine load hits all alike. Prints medians and the ratios to the base checkout's SDPA. Inputs as in
`run.py` (B = 4, H = 4, L2-normalised q and k, Lambda = I, chunk size = D).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import op_inputs  # noqa: E402

import mesa_lm.ops as new_ops  # noqa: E402


def load_ops(checkout: Path, name: str):
    ops = checkout / "mesa_lm" / "ops"
    spec = importlib.util.spec_from_file_location(name, ops / "__init__.py", submodule_search_locations=[str(ops)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def calls(ops, tag: str, D: int):
    return {
        f"softmax (SDPA) [{tag}]": ("softmax (SDPA)", lambda a: ops.softmax_attention(a["q"], a["k"], a["v"])),
        f"mesa default [{tag}]": ("mesa chunked", lambda a: ops.mesa_attention(**a, chunk_size=D)),
        f"mesa gated default [{tag}]": (
            "mesa gated chunked (cholesky)",
            lambda a: ops.mesa_attention(**a, chunk_size=D),
        ),
        f"linear [{tag}]": ("linear chunked", lambda a: ops.linear_attention(**a, chunk_size=D)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, type=Path, help="the other checkout (its mesa_lm/ops is loaded)")
    p.add_argument("--dims", nargs="+", type=int, default=[32])
    p.add_argument("--lengths", nargs="+", type=int, default=[1024, 4096])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--skip-gated", action="store_true", help="leave out the (slow) gated mesa rows")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    base_ops = load_ops(a.base.resolve(), "base_ops")
    rows = []
    for D in a.dims:
        for T in a.lengths:
            table = {**calls(base_ops, "base", D), **calls(new_ops, "new", D)}
            if a.skip_gated:
                table = {k: v for k, v in table.items() if "gated" not in k}
            cpu = torch.device("cpu")
            inputs = {kind: op_inputs(kind, 4, T, 4, D, torch.float32, cpu) for kind, _ in table.values()}
            times = {name: [] for name in table}

            def run(name):
                kind, fn = table[name]
                args = {k: v.detach().requires_grad_() for k, v in inputs[kind].items()}
                t0 = time.perf_counter()
                fn(args).sum().backward()
                return time.perf_counter() - t0

            for name in table:  # warm-up
                run(name)
            load = os.getloadavg()[0]
            for _ in range(a.repeats):
                order = list(table)
                random.shuffle(order)
                for name in order:
                    times[name].append(run(name))
            # Every ratio is to the base checkout's SDPA call (torch's kernel as it was), so a change to the
            # softmax op cannot flatter the other rows.
            sdpa = statistics.median(times["softmax (SDPA) [base]"])
            for name, ts in times.items():
                med = statistics.median(ts)
                row = dict(D=D, T=T, row=name, ms=1e3 * med, ratio_to_base_sdpa=med / sdpa, load=load)
                rows.append(row)
                print(f"D={D} T={T} {name:32s} {1e3 * med:9.1f} ms  {med / sdpa:6.3f} x base SDPA  (load {load:.2f})")
    if a.out:
        a.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
