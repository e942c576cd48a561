# Copyright 2026 The mesa-lm authors.
# Licensed under the Apache License, Version 2.0 (see pyproject.toml).
"""Configuration of the mesa-lm model family: a stack of softmax, linear and mesa layers."""

from __future__ import annotations

import math
from typing import Any

from transformers import PretrainedConfig

MIXER_TYPES = ("softmax", "linear", "mesa")
MLP_TYPES = ("none", "gelu", "swiglu")
NORM_TYPES = ("none", "layernorm", "rmsnorm")
POSITION_TYPES = ("none", "learned", "rope", "concat")
LAMBDA_TYPES = ("scalar", "diagonal")
GATE_TYPES = ("none", "data")
FEATURE_MAPS = ("none", "dpfp", "elu+1")
READ_INS = ("linear", "identity")
READ_OUTS = ("linear", "slice")
# How a mesa layer solves (H_t + Lambda) x_t = q_t on full sequences: the `method` of `mesa_attention` (this file is
# also the Hub remote code, which cannot import the ops; a test keeps the two lists equal).
MESA_SOLVES = ("auto", "woodbury", "cholesky", "cg", "cg_exact")

# How transformers' cache and mask utilities should see each mixer (they validate `layer_types` against a fixed set).
_LAYER_TYPE_OF_MIXER = {"softmax": "full_attention", "linear": "linear_attention", "mesa": "linear_attention"}


def _fail(field: str, value: Any, allowed: str) -> None:
    raise ValueError(f"MesaConfig.{field}={value!r} is invalid: {allowed}")


class MesaConfig(PretrainedConfig):
    r"""Configuration of a [`MesaModel`]: each layer's token mixer is named in `mixer_types`.

    Args:
        vocab_size: token vocabulary; `None` for real-valued models ([`MesaForCausalRegression`]).
        hidden_size: width of the residual stream.
        num_hidden_layers: number of blocks; defaults to `len(mixer_types)`.
        num_attention_heads: heads of every mixer.
        num_key_value_heads: key/value heads of softmax layers (grouped-query attention: each serves
            `num_attention_heads // num_key_value_heads` query heads); defaults to `num_attention_heads`. Linear and
            mesa layers always keep one key and value per head (their state size is set by `head_dim`).
        head_dim: query/key size per head; defaults to `hidden_size // num_attention_heads`.
        value_head_dim: value size per head; defaults to `head_dim`.
        intermediate_size: MLP width; defaults to 4x (GELU) or 8/3x rounded to 8 (SwiGLU) of `hidden_size`.
        mixer_types: one of `softmax`, `linear`, `mesa` per layer (exposed to transformers as `layer_types`).
        mlp_type: `none`, `gelu` (GPT-2 MLP) or `swiglu`.
        norm_type: `none`, `layernorm` or `rmsnorm` (pre-norm blocks and a final norm).
        rope_theta / rope_parameters: RoPE's base, or transformers' full `rope_parameters` dict (`rope_type` "default",
            "linear", "dynamic", "yarn", ... with its `factor`, and `partial_rotary_factor`), as in Llama's config.
        position_type: `none`, `learned` (absolute, added to the input), `rope` (softmax layers) or `concat`
            ([P1]: a learned encoding of width `position_dim` concatenated to the queries and keys of layer 1).
        use_bias: biases in projections and MLPs.
        activation_clip: if set, the residual stream is clipped to `[-c, c]` after every block ([P1]).
        mesa_lambda_type: `scalar` ([P1]: `Lambda = I / lambda_h`, one `lambda_h` per head) or `diagonal`
            ([P3]: `Lambda = diag(mesa_lambda_lower_bound + softplus(theta))` per head and key channel).
        mesa_lambda_init: initial `lambda_h` (scalar) or initial diagonal entry of `Lambda` (diagonal).
        mesa_gate: `none` or `data` ([P3]: `gamma_t`, `beta_t = sigmoid(W x_t + b)` per head).
        mesa_qk_norm / linear_qk_norm: L2-normalise queries and keys per head.
        mesa_conv_size: width of a causal short convolution (with SiLU) on q, k, v; 0 for none.
        mesa_output_norm: per-head RMSNorm on the mesa output ([P3]).
        mesa_solve: how mesa layers solve for `(H_t + Lambda)^{-1} q_t` on whole sequences (training, scoring,
            prefill): `auto` (Woodbury without a forget gate, else `cg_exact`), `woodbury`, `cholesky`, `cg_exact`
            (all exact: CG to float rounding with an exact fallback) or `cg` (conjugate gradient to `mesa_cg_tol`).
            Single-token decoding always solves exactly. To evaluate a saved model with another solve, load it with
            `config=MesaConfig.from_dict({**saved.to_dict(), "mesa_solve": "cg"})`.
        mesa_cg_max_iter / mesa_cg_tol: for `cg`, at most this many iterations, stopping once the relative
            residual is below the tolerance; `None` takes the op's defaults (`2 head_dim + 10`; 1e-5 in float32).
        linear_feature_map: `none`, `dpfp` (with `linear_dpfp_nu`) or `elu+1` on queries and keys.
        linear_gate: a data-dependent forget gate `gamma_t = sigmoid(W x_t + b)` per head.
        chunk_size: chunk length of the chunkwise mesa and linear ops.
        input_dim / output_dim: sizes of real-valued inputs and predictions.
        read_in: `linear`, or `identity` (inputs are the residual stream; needs `input_dim == hidden_size`).
        read_out: `linear`, or `slice` (predictions are the first `output_dim` entries of the residual stream).
    """

    model_type = "mesa"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]  # the cache under both of its transformers names

    def __init__(
        self,
        vocab_size: int | None = 8192,
        hidden_size: int = 256,
        num_hidden_layers: int | None = None,
        num_attention_heads: int = 4,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
        value_head_dim: int | None = None,
        intermediate_size: int | None = None,
        mixer_types: list[str] | None = None,
        mlp_type: str = "swiglu",
        norm_type: str = "rmsnorm",
        norm_eps: float = 1e-5,
        position_type: str = "rope",
        max_position_embeddings: int = 1024,
        rope_theta: float = 10000.0,
        rope_parameters: dict | None = None,
        position_dim: int | None = None,
        use_bias: bool = False,
        activation_clip: float | None = None,
        initializer_range: float = 0.02,
        mesa_lambda_type: str = "scalar",
        mesa_lambda_init: float = 1.0,
        mesa_lambda_lower_bound: float = 0.25,
        mesa_gate: str = "none",
        mesa_qk_norm: bool = False,
        mesa_conv_size: int = 0,
        mesa_output_norm: bool = False,
        mesa_solve: str = "auto",
        mesa_cg_max_iter: int | None = None,
        mesa_cg_tol: float | None = None,
        linear_feature_map: str = "none",
        linear_dpfp_nu: int = 3,
        linear_gate: bool = False,
        linear_qk_norm: bool = False,
        chunk_size: int = 64,
        input_dim: int | None = None,
        output_dim: int | None = None,
        read_in: str = "linear",
        read_out: str = "linear",
        tie_word_embeddings: bool = True,
        use_cache: bool = True,
        pad_token_id: int | None = None,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        **kwargs,
    ):
        kwargs.pop("layer_types", None)  # derived from mixer_types; written by to_dict for transformers' tools
        if mixer_types is None:
            mixer_types = ["softmax"] * (num_hidden_layers if num_hidden_layers is not None else 2)
        self.mixer_types = list(mixer_types)
        self.num_hidden_layers = len(self.mixer_types) if num_hidden_layers is None else num_hidden_layers
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim
        self.value_head_dim = value_head_dim
        self.intermediate_size = intermediate_size
        self.mlp_type = mlp_type
        self.norm_type = norm_type
        self.norm_eps = norm_eps
        self.position_type = position_type
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        # transformers standardises this in PretrainedConfig.__init__: {"rope_type": "default", "rope_theta": ...}
        self.rope_parameters = dict(rope_parameters) if rope_parameters is not None else None
        self.position_dim = position_dim
        self.use_bias = use_bias
        self.activation_clip = activation_clip
        self.initializer_range = initializer_range
        self.mesa_lambda_type = mesa_lambda_type
        self.mesa_lambda_init = mesa_lambda_init
        self.mesa_lambda_lower_bound = mesa_lambda_lower_bound
        self.mesa_gate = mesa_gate
        self.mesa_qk_norm = mesa_qk_norm
        self.mesa_conv_size = mesa_conv_size
        self.mesa_output_norm = mesa_output_norm
        self.mesa_solve = mesa_solve
        self.mesa_cg_max_iter = mesa_cg_max_iter
        self.mesa_cg_tol = mesa_cg_tol
        self.linear_feature_map = linear_feature_map
        self.linear_dpfp_nu = linear_dpfp_nu
        self.linear_gate = linear_gate
        self.linear_qk_norm = linear_qk_norm
        self.chunk_size = chunk_size
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.read_in = read_in
        self.read_out = read_out
        self.use_cache = use_cache
        self._validate_and_fill()
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        self._validate_rope()

    def _validate_rope(self) -> None:
        """`rope_parameters` after transformers' standardisation: a known type, a positive theta, a sane factor."""
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        params = self.rope_parameters
        if not isinstance(params, dict) or "rope_type" not in params:
            _fail("rope_parameters", params, "must be a dict with 'rope_type' and 'rope_theta'")
        allowed = ("default", *ROPE_INIT_FUNCTIONS)
        if params["rope_type"] not in allowed:
            _fail("rope_parameters['rope_type']", params["rope_type"], f"allowed types are {allowed}")
        theta = params.get("rope_theta")
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not math.isfinite(theta) or theta <= 0:
            _fail("rope_parameters['rope_theta']", theta, "must be a finite number > 0")
        factor = params.get("partial_rotary_factor", 1.0)
        if not isinstance(factor, (int, float)) or not 0 < factor <= 1 or int(self.head_dim * factor) < 2:
            _fail("rope_parameters['partial_rotary_factor']", factor, "must be in (0, 1] and rotate >= 2 channels")
        self.rope_theta = theta

    @property
    def layer_types(self) -> list[str]:
        """The mixers as transformers' layer types: softmax -> full_attention, linear and mesa -> linear_attention."""
        return [_LAYER_TYPE_OF_MIXER[m] for m in self.mixer_types]

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output["layer_types"] = self.layer_types
        return output

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "MesaConfig":
        """A named configuration of the papers' models (see `mesa_lm.models.mesa.presets`), with overrides."""
        from .presets import preset_kwargs

        return cls(**{**preset_kwargs(name), **overrides})

    def _validate_and_fill(self) -> None:
        """Check every field, naming the bad value and what is allowed; fill the derived defaults."""
        if not isinstance(self.num_hidden_layers, int) or self.num_hidden_layers < 1:
            _fail("num_hidden_layers", self.num_hidden_layers, "must be a positive integer")
        if len(self.mixer_types) != self.num_hidden_layers:
            _fail(
                "mixer_types",
                self.mixer_types,
                f"has {len(self.mixer_types)} entries but num_hidden_layers is {self.num_hidden_layers}",
            )
        for i, mixer in enumerate(self.mixer_types):
            if mixer not in MIXER_TYPES:
                _fail(f"mixer_types[{i}]", mixer, f"allowed mixers are {MIXER_TYPES}")
        for field, allowed in (
            ("mlp_type", MLP_TYPES),
            ("norm_type", NORM_TYPES),
            ("position_type", POSITION_TYPES),
            ("mesa_lambda_type", LAMBDA_TYPES),
            ("mesa_gate", GATE_TYPES),
            ("linear_feature_map", FEATURE_MAPS),
            ("read_in", READ_INS),
            ("read_out", READ_OUTS),
            ("mesa_solve", MESA_SOLVES),
        ):
            if getattr(self, field) not in allowed:
                _fail(field, getattr(self, field), f"allowed values are {allowed}")
        for field in ("hidden_size", "num_attention_heads", "max_position_embeddings", "chunk_size", "linear_dpfp_nu"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                _fail(field, value, "must be a positive integer")
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        kv_heads = self.num_key_value_heads
        if not isinstance(kv_heads, int) or isinstance(kv_heads, bool) or kv_heads < 1:
            _fail("num_key_value_heads", kv_heads, "must be a positive integer")
        if self.num_attention_heads % kv_heads:
            _fail("num_key_value_heads", kv_heads, f"must divide num_attention_heads={self.num_attention_heads}")
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                _fail(
                    "num_attention_heads",
                    self.num_attention_heads,
                    f"must divide hidden_size={self.hidden_size} when head_dim is not given",
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.value_head_dim is None:
            self.value_head_dim = self.head_dim
        for field in ("head_dim", "value_head_dim"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                _fail(field, value, "must be a positive integer")
        if self.position_type == "rope" and self.head_dim % 2:
            _fail("head_dim", self.head_dim, "must be even for position_type='rope'")
        if self.position_type == "concat":
            if self.position_dim is None:
                self.position_dim = self.hidden_size
            if not isinstance(self.position_dim, int) or self.position_dim < 1:
                _fail("position_dim", self.position_dim, "must be a positive integer")
        if self.intermediate_size is None:
            if self.mlp_type == "swiglu":
                self.intermediate_size = 8 * math.ceil(8 * self.hidden_size / 3 / 8)
            else:
                self.intermediate_size = 4 * self.hidden_size
        if not isinstance(self.intermediate_size, int) or self.intermediate_size < 1:
            _fail("intermediate_size", self.intermediate_size, "must be a positive integer")
        if self.vocab_size is not None and (not isinstance(self.vocab_size, int) or self.vocab_size < 1):
            _fail("vocab_size", self.vocab_size, "must be a positive integer, or None for real-valued models")
        for field in ("norm_eps", "rope_theta", "initializer_range", "mesa_lambda_init", "mesa_lambda_lower_bound"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                _fail(field, value, "must be a finite number")
        if self.activation_clip is not None and not math.isfinite(self.activation_clip):
            _fail("activation_clip", self.activation_clip, "must be a finite number > 0, or None for no clipping")
        if self.norm_eps <= 0:
            _fail("norm_eps", self.norm_eps, "must be > 0")
        if self.rope_theta <= 0:
            _fail("rope_theta", self.rope_theta, "must be > 0 (the base of RoPE's frequencies)")
        if self.initializer_range < 0:
            _fail("initializer_range", self.initializer_range, "must be >= 0")
        if self.activation_clip is not None and self.activation_clip <= 0:
            _fail("activation_clip", self.activation_clip, "must be > 0, or None for no clipping")
        if self.mesa_lambda_lower_bound <= 0:
            _fail("mesa_lambda_lower_bound", self.mesa_lambda_lower_bound, "must be > 0")
        if self.mesa_lambda_init <= 0:
            _fail("mesa_lambda_init", self.mesa_lambda_init, "must be > 0")
        if self.mesa_lambda_type == "diagonal" and self.mesa_lambda_init <= self.mesa_lambda_lower_bound:
            _fail(
                "mesa_lambda_init",
                self.mesa_lambda_init,
                f"must exceed mesa_lambda_lower_bound={self.mesa_lambda_lower_bound} for the diagonal regulariser",
            )
        if not isinstance(self.mesa_conv_size, int) or self.mesa_conv_size < 0 or self.mesa_conv_size == 1:
            _fail("mesa_conv_size", self.mesa_conv_size, "must be 0 (no convolution) or an integer >= 2")
        if self.mesa_solve == "woodbury" and self.mesa_gate != "none":
            _fail("mesa_solve", self.mesa_solve, "is exact only without a forget gate (mesa_gate='none'); use "
                  "'cg_exact', 'cholesky' or 'cg' with mesa_gate='data'")
        iters = self.mesa_cg_max_iter
        if iters is not None and (not isinstance(iters, int) or isinstance(iters, bool) or iters < 1):
            _fail("mesa_cg_max_iter", iters, "must be an integer >= 1, or None for the op's default (2 head_dim + 10)")
        tol = self.mesa_cg_tol
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol)
                                or tol <= 0):
            _fail("mesa_cg_tol", tol, "must be a finite number > 0, or None for the op's default")
        for field in ("input_dim", "output_dim"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 1):
                _fail(field, value, "must be a positive integer or None")
        if self.read_in == "identity" and self.input_dim is not None and self.input_dim != self.hidden_size:
            _fail("input_dim", self.input_dim, f"must equal hidden_size={self.hidden_size} for read_in='identity'")
        if self.read_out == "slice" and self.output_dim is not None and self.output_dim > self.hidden_size:
            _fail("output_dim", self.output_dim, f"must be <= hidden_size={self.hidden_size} for read_out='slice'")


__all__ = ["MesaConfig"]
