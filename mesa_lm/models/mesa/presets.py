"""Named configurations of the papers' models ([P1] sections 3 and 6, and a [P3] MesaNet-style block)."""

from __future__ import annotations

from typing import Any

# [P1]'s linear-attention-only models read constructed tokens e_t = (0, s_t, s_t, s_{t-1}) of width 4d = 40 straight
# into the residual stream and read the prediction from its first d = 10 entries.
_CONSTRUCTED = dict(
    vocab_size=None,
    hidden_size=40,
    head_dim=20,
    value_head_dim=20,
    mlp_type="none",
    norm_type="none",
    position_type="none",
    use_bias=False,
    activation_clip=4.0,
    initializer_range=0.0002,
    input_dim=40,
    output_dim=10,
    read_in="identity",
    read_out="slice",
    tie_word_embeddings=False,
)

# [P1]'s full Transformers on dynamics: GPT-2 blocks (pre-LN, 4x GELU MLP), width 40, key size 20, linear read-in and
# read-out of d = 10 dimensional states, a width-40 positional encoding concatenated to layer 1's queries and keys.
_GPT2_DYNAMICS = dict(
    vocab_size=None,
    hidden_size=40,
    num_attention_heads=4,
    head_dim=20,
    mlp_type="gelu",
    intermediate_size=160,
    norm_type="layernorm",
    position_type="concat",
    position_dim=40,
    max_position_embeddings=256,
    use_bias=True,
    input_dim=10,
    output_dim=10,
    tie_word_embeddings=False,
)

# [P1] appendix G language models: the first layer softmax; others with DPFP (nu = 3) and L2-normalised q and k.
_LANGUAGE = dict(
    vocab_size=8192,
    hidden_size=256,
    num_attention_heads=4,
    norm_type="layernorm",
    position_type="rope",
    max_position_embeddings=1024,
    linear_feature_map="dpfp",
    linear_dpfp_nu=3,
    linear_qk_norm=True,
    mesa_qk_norm=True,
    mlp_type="gelu",
)

PRESETS: dict[str, dict[str, Any]] = {
    "linear-1": dict(_CONSTRUCTED, mixer_types=["linear"], num_attention_heads=2),
    "linear-2": dict(_CONSTRUCTED, mixer_types=["linear"] * 2, num_attention_heads=4),
    "linear-4": dict(_CONSTRUCTED, mixer_types=["linear"] * 4, num_attention_heads=4),
    "linear-6": dict(_CONSTRUCTED, mixer_types=["linear"] * 6, num_attention_heads=4),
    "mesa-1": dict(_CONSTRUCTED, mixer_types=["mesa"], num_attention_heads=2),
    "softmax-7": dict(_GPT2_DYNAMICS, mixer_types=["softmax"] * 7),
    "hybrid-mesa": dict(_GPT2_DYNAMICS, mixer_types=["softmax", "mesa"]),
    "lm-softmax-2": dict(_LANGUAGE, mixer_types=["softmax"] * 2, mlp_type="none"),
    "lm-hybrid-mesa-2": dict(_LANGUAGE, mixer_types=["softmax", "mesa"], mlp_type="none"),
    "lm-hybrid-linear-2": dict(_LANGUAGE, mixer_types=["softmax", "linear"], mlp_type="none"),
    "lm-softmax-4": dict(_LANGUAGE, mixer_types=["softmax"] * 4),
    "lm-hybrid-mesa-4": dict(_LANGUAGE, mixer_types=["softmax"] + ["mesa"] * 3),
    "lm-hybrid-linear-4": dict(_LANGUAGE, mixer_types=["softmax"] + ["linear"] * 3),
    # [P3]: RMSNorm, gated mesa mixer (diagonal regulariser >= 0.25, short conv, L2 q/k, output norm), SwiGLU, tied.
    "mesanet": dict(
        vocab_size=8192,
        hidden_size=256,
        num_attention_heads=4,
        mixer_types=["mesa"] * 4,
        mlp_type="swiglu",
        norm_type="rmsnorm",
        position_type="none",
        mesa_lambda_type="diagonal",
        mesa_lambda_init=1.0,
        mesa_lambda_lower_bound=0.25,
        mesa_gate="data",
        mesa_qk_norm=True,
        mesa_conv_size=4,
        mesa_output_norm=True,
        tie_word_embeddings=True,
    ),
}


def preset_kwargs(name: str) -> dict[str, Any]:
    """The keyword arguments of preset `name` (a copy, safe to modify)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {', '.join(PRESETS)}")
    return {k: (list(v) if isinstance(v, list) else v) for k, v in PRESETS[name].items()}
