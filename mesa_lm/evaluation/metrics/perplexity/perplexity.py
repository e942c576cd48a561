"""Perplexity as an `evaluate` metric that loads offline: `evaluate.load("<path>/perplexity")`.

Inputs are per-window (or per-token) sums of next-token negative log-likelihood and the number of tokens they cover;
perplexity is `exp(sum nll / sum tokens)`, the exponential of the mean token NLL.
"""

import math

import datasets
import evaluate

_DESCRIPTION = "Perplexity exp(mean token NLL) from summed next-token negative log-likelihoods and token counts."
_KWARGS = """
Args:
    nll_sum: summed next-token negative log-likelihood (nats) of each window or token.
    num_tokens: number of tokens each sum covers.
Returns:
    perplexity: exp(sum(nll_sum) / sum(num_tokens)); mean_nll: that mean; tokens: sum(num_tokens).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Perplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"nll_sum": datasets.Value("float64"), "num_tokens": datasets.Value("float64")}),
        )

    def _compute(self, nll_sum, num_tokens):
        total = math.fsum(num_tokens)
        if total <= 0:
            raise ValueError("perplexity needs at least one scored token")
        mean_nll = math.fsum(nll_sum) / total
        return {"perplexity": math.exp(mean_nll), "mean_nll": mean_nll, "tokens": total}
