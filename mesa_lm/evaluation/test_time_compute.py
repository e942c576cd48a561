"""Test-time compute of the mesa layer: the same trained model evaluated with each way of solving
`(H_t + Lambda) x_t = q_t` (exact by Woodbury or Cholesky, or k conjugate-gradient steps), reporting its loss or task
error, how far its outputs are from the exact solve's, and its time per token.

The solve is the model's config (`mesa_solve`, `mesa_cg_max_iter`): each setting is a copy of the model built from
the changed config with the same weights. CG stops early where the relative residual is below `mesa_cg_tol` (the
op's default, about 100 float32 ulps, unless the config sets one), so `cg-16` on 16-dim heads is the exact solve.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from ..data.recall import IGNORE
from .bootstrap import bootstrap_curve

Tensor = torch.Tensor
DEFAULT_CG_STEPS = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class Solve:
    """One setting of the mesa layers' solve: `method` of `mesa_attention`, and `cg_max_iter` for CG."""

    label: str
    method: str
    cg_max_iter: int | None = None


def solve_settings(cg_steps: Iterable[int] = DEFAULT_CG_STEPS, gated: bool = False) -> list[Solve]:
    """The exact solves (Woodbury only without a forget gate, where it is exact), then CG with each step count."""
    exact = [Solve("cholesky", "cholesky")] if gated else [Solve("woodbury", "woodbury"), Solve("cholesky", "cholesky")]
    return exact + [Solve(f"cg-{k}", "cg", k) for k in sorted(set(cg_steps))]


def has_mesa_layers(config) -> bool:
    return "mesa" in getattr(config, "mixer_types", ())


def with_solve(model, solve: Solve):
    """A copy of `model` (same weights, eval mode) whose mesa layers solve as `solve` says."""
    config = type(model.config).from_dict({**model.config.to_dict(), "mesa_solve": solve.method,
                                           "mesa_cg_max_iter": solve.cg_max_iter})
    copy = type(model)(config)
    copy.load_state_dict(model.state_dict())
    return copy.to(next(model.parameters()).device).eval()


# ----- what is scored: each scorer returns per-sequence loss sums, weights, and the raw outputs -------------------
def score_text(model, batch: dict) -> tuple[Tensor, Tensor, Tensor]:
    """Next-token NLL summed over the scored tokens of each window (`ids`, `weights` from `make_windows`)."""
    logits = model(input_ids=batch["ids"]).logits.float()
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), batch["ids"][:, 1:], reduction="none")
    weights = batch["weights"][:, 1:]
    return (nll * weights).sum(1), weights.sum(1), logits


def score_token_task(model, batch: dict) -> tuple[Tensor, Tensor, Tensor]:
    """Answers predicted wrongly (argmax) per sequence of a token task (e.g. recall), and answers."""
    logits = model(input_ids=batch["input_ids"]).logits.float()
    target = batch["labels"][:, 1:]
    scored = target != IGNORE
    wrong = (logits[:, :-1].argmax(-1) != target) & scored
    return wrong.sum(1).double(), scored.sum(1).double(), logits


def score_regression(model, batch: dict) -> tuple[Tensor, Tensor, Tensor]:
    """`1/2 ||prediction - target||^2` summed over the scored positions of each sequence (a regression task)."""
    predictions = model(inputs=batch["inputs"]).predictions.float()
    losses = 0.5 * (predictions - batch["targets"].float()).pow(2).sum(-1)
    mask = batch.get("target_mask")
    weights = torch.ones_like(losses) if mask is None else mask.to(losses.dtype)
    return (losses * weights).sum(1).double(), weights.sum(1).double(), predictions


@torch.no_grad()
def _pass(model, batches: list[dict], scorer: Callable) -> tuple[Tensor, Tensor, list[Tensor]]:
    sums, weights, outputs = [], [], []
    for batch in batches:
        s, w, out = scorer(model, batch)
        sums.append(s.double())
        weights.append(w.double())
        outputs.append(out)
    return torch.cat(sums), torch.cat(weights), outputs


@torch.no_grad()
def _seconds(model, batch: dict, scorer: Callable, repeats: int) -> float:
    """The fastest of `repeats` timed passes over one batch, after one warm-up (robust to a busy machine)."""
    scorer(model, batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        scorer(model, batch)
        times.append(time.perf_counter() - start)
    return min(times)


def _relative_distance(outputs: list[Tensor], reference: list[Tensor]) -> float:
    """||outputs - reference|| / ||reference|| over all batches (Frobenius norms, float64)."""
    diff = sum((o.double() - r.double()).square().sum() for o, r in zip(outputs, reference))
    norm = sum(r.double().square().sum() for r in reference)
    return float((diff / norm.clamp(min=1e-300)).sqrt())


def _tokens(batch: dict) -> int:
    first = next(v for k, v in batch.items() if k in ("ids", "input_ids", "inputs"))
    return first.shape[0] * first.shape[1]


def evaluate_test_time_compute(
    model,
    batches: list[dict],
    scorer: Callable,
    solves: list[Solve],
    timing_repeats: int = 3,
    num_resamples: int = 1000,
    progress: bool = True,
) -> list[dict]:
    """One row per solve: the metric (sum of losses / sum of weights, with a 90% bootstrap interval over
    sequences), `deviation` = ||outputs - exact outputs|| / ||exact outputs|| (logits or predictions, all
    sequences; the reference is the first solve in `solves`, an exact one), and milliseconds per token (fastest of `timing_repeats` timed
    forward passes over the first batch)."""
    from tqdm.auto import tqdm

    if not has_mesa_layers(model.config):
        raise ValueError(f"the model has no mesa layer (mixers {list(model.config.mixer_types)}): its solve has "
                         "nothing to change")
    reference = None
    rows = []
    for solve in tqdm(solves, desc="test-time compute", disable=not progress):
        variant = with_solve(model, solve)
        sums, weights, outputs = _pass(variant, batches, scorer)
        if reference is None:
            reference = outputs
        deviation = _relative_distance(outputs, reference)
        band = bootstrap_curve(sums[:, None], weights[:, None], num_resamples)
        seconds = _seconds(variant, batches[0], scorer, timing_repeats)
        rows.append({"solve": solve.label, "method": solve.method, "cg_max_iter": solve.cg_max_iter,
                     "metric": band.mean[0], "low": band.low[0], "high": band.high[0], "deviation": deviation,
                     "ms_per_token": 1e3 * seconds / _tokens(batches[0])})
    return rows

