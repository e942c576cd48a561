"""Bootstrap intervals and the evaluate metrics (loaded offline from their folders)."""

import math

import evaluate
import torch

from mesa_lm.evaluation.bootstrap import bootstrap_curve
from mesa_lm.evaluation.metrics import metric_path


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_more_prompts():
    errors = torch.rand(2000, 3, generator=torch.Generator().manual_seed(0))
    curve = bootstrap_curve(errors, num_resamples=500)
    for mean, low, high in zip(curve.mean, curve.low, curve.high):
        assert low < mean < high
        assert abs(mean - 0.5) < 0.03
        # a 90% interval of a U(0, 1) mean over 2000 rows is about +-1.645 * sqrt(1/12 / 2000)
        assert abs((high - low) / 2 - 1.645 * math.sqrt(1 / 12 / 2000)) < 0.002
    small = bootstrap_curve(errors[:100], num_resamples=500)
    assert small.high[0] - small.low[0] > curve.high[0] - curve.low[0]


def test_normalised_curve_of_the_reference_itself_is_exactly_one():
    zero = torch.rand(1000, 4) + 0.1
    curve = bootstrap_curve(zero, zero, num_resamples=200)
    assert curve.mean == curve.low == curve.high == [1.0] * 4


def test_metrics_load_offline_with_evaluate_load():
    perplexity = evaluate.load(metric_path("perplexity"), keep_in_memory=True)
    assert perplexity is not None
    result = perplexity.compute(nll_sum=[2.0, 4.0], num_tokens=[1, 3])
    assert math.isclose(result["perplexity"], math.exp(1.5)) and result["tokens"] == 4
    icl = evaluate.load(metric_path("icl_regression_error"), keep_in_memory=True)
    result = icl.compute(predictions=[[0.0, 1.0], [1.0, 1.0]], references=[[1.0, 1.0], [1.0, 1.0]])
    assert math.isclose(result["error"], 0.25) and math.isclose(result["normalised_error"], 0.25)


def test_difference_interval_over_windows():
    from mesa_lm.evaluation.bootstrap import bootstrap_difference

    generator = torch.Generator().manual_seed(1)
    nll = torch.rand(500, 10, generator=generator, dtype=torch.float64) + torch.linspace(1.0, 0.0, 10)  # falls
    weights = torch.ones_like(nll)
    value, low, high = bootstrap_difference(nll, weights, late=9, early=1, num_resamples=300)
    assert abs(value - (nll[:, 9].mean() - nll[:, 1].mean()).item()) < 1e-12
    assert low < value < high < 0
