"""A training step of a causal language model, and the LlamaForCausalLM of the same shape as a MesaConfig.

Shared by the model benchmarks (`run.py --sections model`, `presets_vs_llama.py`, `gpu_check.py`).
"""

from __future__ import annotations

from typing import Callable

import torch


def preset_config(name: str, length: int, **overrides):
    """The MesaConfig that preset `name` trains, able to run `length` tokens.

    A model preset (`MesaConfig.from_preset`, e.g. `mesanet`) is taken as it is. A run preset of `train_lm.py` that is
    not also a model preset (e.g. `docstrings-hybrid`, the default run) gives its model preset with the run's
    `config_overrides` and its tokenizer's vocabulary size (`vocab_size`, as `train_lm.py` sets it).
    `max_position_embeddings` is raised to `length` where it is smaller.
    """
    from mesa_lm.models.mesa import MesaConfig
    from mesa_lm.models.mesa.presets import PRESETS
    from mesa_lm.training.presets import RUN_PRESETS

    if name in PRESETS:
        kwargs = {}
        model_preset = name
    elif name in RUN_PRESETS:
        from mesa_lm.training.arguments import TrainArguments

        args = TrainArguments.from_preset(name)
        if args.task != "text" or not args.model_preset:
            raise ValueError(f"preset {name!r} does not train a language model (task {args.task!r})")
        kwargs = {**args.model_overrides, "vocab_size": args.vocab_size}
        model_preset = args.model_preset
    else:
        lms = {n for n, p in PRESETS.items() if p.get("vocab_size", 8192) is not None}
        known = sorted(lms | {n for n, p in RUN_PRESETS.items() if p.get("task") == "text"})
        raise ValueError(f"unknown preset {name!r}; language-model presets: {', '.join(known)}")
    kwargs.update(overrides)
    config = MesaConfig.from_preset(model_preset, **kwargs)
    if config.vocab_size is None:
        raise ValueError(f"preset {name!r} has no vocabulary (it reads real-valued inputs), not a language model")
    config.max_position_embeddings = max(config.max_position_embeddings, length)
    return config


def llama_twin(config, length: int):
    """transformers' LlamaForCausalLM config of the same vocabulary, width, depth, heads (and key/value heads),
    head size, MLP width, norm epsilon, bias and embedding tying as `config`; SwiGLU, RMSNorm, RoPE, SDPA."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads or config.num_attention_heads,
        head_dim=config.head_dim,
        hidden_act="silu",
        rms_norm_eps=config.norm_eps,
        tie_word_embeddings=config.tie_word_embeddings,
        attention_bias=config.use_bias,
        mlp_bias=config.use_bias,
        max_position_embeddings=max(config.max_position_embeddings, length),
        attn_implementation="sdpa",
    )


def training_step(
    model: torch.nn.Module, ids: torch.Tensor, autocast_dtype: torch.dtype | None
) -> Callable[[], torch.Tensor]:
    """A function running one step (forward, cross-entropy loss, backward, AdamW step, zeroed gradients) on `ids`
    and returning the (detached) loss; under autocast to `autocast_dtype` when given (parameters and optimizer stay
    float32)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    device_type = ids.device.type

    def step() -> torch.Tensor:
        with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
