"""Garg et al.'s scalar few-shot regression `y = w . x`, `w ~ N(0, I)`; `y` enters as the token `(y, 0, ..., 0)`."""

from __future__ import annotations

from dataclasses import dataclass

from ..regression import sample_scalar_regression
from . import register_task
from .fewshot_regression import FewShotRegressionTask


@register_task
@dataclass
class ScalarRegressionTask(FewShotRegressionTask):
    """Same options and prompt layout as `fewshot_regression`; one output dimension."""

    name = "scalar_regression"
    description = "few-shot scalar regression y = w . x (Garg et al.)"

    sampler = staticmethod(sample_scalar_regression)

    @property
    def output_dim(self) -> int:
        return 1
