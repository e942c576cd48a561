"""Bootstrap confidence intervals over prompts, sequences or windows (the rows of an error matrix)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass
class Curve:
    """A per-position mean with its bootstrap interval, as plain lists (JSON-ready)."""

    mean: list[float]
    low: list[float]
    high: list[float]

    def as_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean, "low": self.low, "high": self.high}


def resample_counts(rows: int, num_resamples: int, generator: torch.Generator, chunk: int = 100):
    """Chunks of (resamples, rows) counts: how often each row is drawn in a resample with replacement.

    Statistics that are sums over rows become `counts @ values`, which never materialises resampled copies."""
    for start in range(0, num_resamples, chunk):
        count = min(chunk, num_resamples - start)
        index = torch.randint(0, rows, (count, rows), generator=generator)
        counts = torch.zeros(count, rows, dtype=torch.float64)
        counts.scatter_add_(1, index, torch.ones_like(counts))
        yield counts


def _ratio(numerator_sums: Tensor, denominator_sums: Tensor) -> Tensor:
    return numerator_sums / denominator_sums.clamp(min=1e-300)


def bootstrap_curve(
    errors: Tensor,
    reference: Tensor | None = None,
    num_resamples: int = 1000,
    level: float = 0.9,
    seed: int = 0,
) -> Curve:
    """Mean over rows of `errors` (P, N) per column, with a percentile bootstrap interval at `level`.

    Rows are resampled with replacement. If `reference` (P, N) is given, the statistic is the ratio of means
    `mean(errors) / mean(reference)` per column on each resample: normalisation by the zero predictor on the same
    prompts (which then scores exactly 1), or a weighted mean when `reference` holds 0/1 weights.
    """
    if errors.ndim != 2 or errors.shape[0] < 2:
        raise ValueError(f"errors must be (rows >= 2, positions), got shape {tuple(errors.shape)}")
    errors = errors.to(torch.float64)
    reference = torch.ones_like(errors) if reference is None else reference.to(torch.float64)
    point = _ratio(errors.sum(0), reference.sum(0))
    generator = torch.Generator().manual_seed(seed)
    samples = torch.cat(
        [_ratio(c @ errors, c @ reference) for c in resample_counts(errors.shape[0], num_resamples, generator)]
    )
    alpha = (1 - level) / 2
    low, high = torch.quantile(samples, alpha, dim=0), torch.quantile(samples, 1 - alpha, dim=0)
    return Curve(point.tolist(), low.tolist(), high.tolist())


def bootstrap_difference(
    numerators: Tensor,
    denominators: Tensor,
    late: int,
    early: int,
    num_resamples: int = 1000,
    level: float = 0.9,
    seed: int = 0,
) -> tuple[float, float, float]:
    """`r[late] - r[early]` with `r = sum(numerators) / sum(denominators)` over rows, per column of (P, N) inputs,
    and its percentile bootstrap interval, rows resampled jointly (e.g. the ICL score over evaluation windows)."""
    num = numerators[:, [early, late]].to(torch.float64)
    den = denominators[:, [early, late]].to(torch.float64)

    def statistic(n: Tensor, d: Tensor) -> Tensor:
        ratio = _ratio(n, d)
        return ratio[..., 1] - ratio[..., 0]

    generator = torch.Generator().manual_seed(seed)
    samples = torch.cat([statistic(c @ num, c @ den) for c in resample_counts(num.shape[0], num_resamples, generator)])
    alpha = (1 - level) / 2
    low, high = torch.quantile(samples, alpha).item(), torch.quantile(samples, 1 - alpha).item()
    return statistic(num.sum(0), den.sum(0)).item(), low, high
