"""mesa-lm: Transformers that mix softmax attention, linear attention and the mesa layer.

Importing the package registers the family with transformers' Auto classes (`AutoConfig`, `AutoModel`,
`AutoModelForCausalLM`), so `from_pretrained` finds it by `model_type = "mesa"`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .models.mesa import (
    PRESETS,
    CausalRegressionOutput,
    MesaCache,
    MesaConfig,
    MesaForCausalLM,
    MesaForCausalRegression,
    MesaModel,
    MesaPreTrainedModel,
)

__version__ = "0.1.0"

AutoConfig.register("mesa", MesaConfig, exist_ok=True)
AutoModel.register(MesaConfig, MesaModel, exist_ok=True)
AutoModelForCausalLM.register(MesaConfig, MesaForCausalLM, exist_ok=True)

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
