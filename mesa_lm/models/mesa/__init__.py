"""The mesa model family: config, presets, cache and models."""

from .cache_mesa import MesaCache
from .configuration_mesa import MesaConfig
from .modeling_mesa import (
    CausalRegressionOutput,
    MesaForCausalLM,
    MesaForCausalRegression,
    MesaModel,
    MesaPreTrainedModel,
)
from .presets import PRESETS

__all__ = [
    "PRESETS",
    "CausalRegressionOutput",
    "MesaCache",
    "MesaConfig",
    "MesaForCausalLM",
    "MesaForCausalRegression",
    "MesaModel",
    "MesaPreTrainedModel",
]
