"""Experiment 6 ([P2]): a one-layer linear Transformer trained by gradient descent on a complex autoregressive
process learns one step of GD; whether it recovers the next token depends on the initial token's distribution."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ...analysis.p2.experiment import P2Config, run_p2
from ..budget import Budget
from ..report import Claim, ExperimentResult, verdict

CLAIMS = (
    ("ab_converges_to_limit", "from every initialisation, ab converges to the minimiser of the population loss within the "
     "GD-1 structure (Gaussian and sparse starts)"),
    ("off_structure_stays_zero", "under the diagonal initialisation the off-diagonal blocks stay zero"),
    ("recovers_next_token", "sparse start: the trained model recovers the next token (ratio -> 1, test error -> 0)"),
    ("does_not_recover", "Gaussian start: it does not recover the next token"),
    ("off_structure_appears", "all-ones start: off-diagonal structure appears (no longer vanilla GD)"),
)


def run(out: Path, budget: Budget) -> ExperimentResult:
    started = time.time()
    # [P2] trains on m = 10,000 sequences; the report's full budget uses 2,000 (about 1/5 of the time on a CPU) and
    # `run_p2(folder, cfg=P2Config())` runs the paper's size.
    cfg = {"smoke": P2Config(m=40, m_test=40, steps=5, tol_ab=0.1), "quick": P2Config.quick(),
           "full": P2Config(m=2_000, tol_ab=0.1)}[budget.level]
    folder = out / "p2"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # its many small complex matrix products run faster on one thread than on two
    try:
        results = run_p2(folder, cfg=cfg)
    finally:
        torch.set_num_threads(threads)
    claims = []
    for key, text in CLAIMS:
        cases = [(start, init, run_["final"]) for start, res in results["starts"].items()
                 for init, run_ in res["runs"].items() if key in run_["final"]["verdicts"]]
        held = [f"{s}/{i}" for s, i, f in cases if f["verdicts"][key]]
        failed = [f"{s}/{i}" for s, i, f in cases if not f["verdicts"][key]]
        measured = f"{len(held)} of {len(cases)} runs" + (f"; not: {', '.join(failed)}" if failed else "")
        if key == "ab_converges_to_limit":
            gaps = {f"{s}/{i}": f["ab_gap"] for s, i, f in cases}
            measured += f"; largest relative gap {max(abs(g) for g in gaps.values()):.1%}"
        claims.append(Claim(text, measured, verdict(len(held) == len(cases), partial=len(held) > 0),
                            {"held": held, "failed": failed}))
    figures = sorted(str(p) for p in folder.glob("*.png"))
    notes = (f"m = {cfg.m} training sequences, T = {cfg.T}, d = {cfg.d}, {cfg.steps} full-batch GD steps with the "
             f"authors' step sizes; limits of ab computed in closed form (see docs/p2.md). Tolerances: |ab gap| < "
             f"{cfg.tol_ab:.0%}, off-structure norm < {cfg.tol_off:.0%} of the structured one. With few sequences "
             "the training-set optimum itself sits a few percent from the population limit ([P2] uses m = 10,000).")
    return ExperimentResult("p2", "6. [P2]: GD-1 emerges; recovery depends on the start", "P2", claims, figures, notes,
                            time.time() - started)
