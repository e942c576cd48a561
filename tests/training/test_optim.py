"""Weight decay groups and the learning-rate schedule."""

import math

from mesa_lm import MesaConfig, MesaForCausalLM
from mesa_lm.training.optim import parameter_groups, warmup_cosine


def test_no_weight_decay_on_norms_biases_regulariser_and_gates():
    config = MesaConfig(vocab_size=50, hidden_size=16, num_attention_heads=2, mixer_types=["softmax", "mesa", "linear"],
                        use_bias=True, norm_type="layernorm", mesa_gate="data", linear_gate=True)
    model = MesaForCausalLM(config)
    decay, no_decay = parameter_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert "model.layers.1.mixer.log_lambda" in no_decay_names
    assert "model.layers.1.mixer.forget_gate.weight" in no_decay_names
    assert "model.layers.2.mixer.forget_gate.bias" in no_decay_names
    assert "model.layers.0.mixer_norm.weight" in no_decay_names
    assert "model.layers.0.mixer.q_proj.bias" in no_decay_names
    assert "model.layers.0.mixer.q_proj.weight" in decay_names and "model.embed_tokens.weight" in decay_names
    assert len(decay_names) + len(no_decay_names) == len(list(model.parameters()))
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_warmup_then_cosine():
    assert warmup_cosine(0, 10, 100, 0.1) == 0.1
    assert warmup_cosine(9, 10, 100, 0.1) == 1.0
    assert math.isclose(warmup_cosine(55, 10, 100, 0.1), 0.1 + 0.9 * 0.5)
    assert math.isclose(warmup_cosine(100, 10, 100, 0.1), 0.1)
    assert warmup_cosine(50, 0, 100, 0.0, cosine=False) == 1.0
