"""Small models of every layer mix, shared by the model tests."""

import torch

from mesa_lm import MesaConfig, MesaForCausalLM

VOCAB = 97

# Each mix also switches on the options of its mixers, so the cache paths of all of them are exercised.
MIXES = {
    "softmax": dict(mixer_types=["softmax", "softmax"], position_type="rope", num_key_value_heads=1),  # GQA
    "linear": dict(
        mixer_types=["linear", "linear"],
        position_type="none",
        linear_feature_map="dpfp",
        linear_qk_norm=True,
        linear_gate=True,
    ),
    "mesa": dict(
        mixer_types=["mesa", "mesa"],
        position_type="none",
        mesa_gate="data",
        mesa_conv_size=4,
        mesa_qk_norm=True,
        mesa_lambda_type="diagonal",
        mesa_output_norm=True,
    ),
    "softmax+mesa": dict(mixer_types=["softmax", "mesa"], position_type="learned"),
    "softmax+linear+mesa": dict(
        mixer_types=["softmax", "linear", "mesa"], position_type="concat", position_dim=8, linear_feature_map="elu+1"
    ),
}


def make_model(mix: str, **overrides) -> MesaForCausalLM:
    """A float32 model of `mix` in eval mode; init std 0.3 keeps logits far from ties, so greedy tokens are stable."""
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_attention_heads=2,
        chunk_size=4,
        initializer_range=0.3,
        max_position_embeddings=128,
        pad_token_id=0,
        eos_token_id=None,
    )
    kwargs.update(MIXES[mix])
    kwargs.update(overrides)
    torch.manual_seed(1)
    return MesaForCausalLM(MesaConfig(**kwargs)).eval()
