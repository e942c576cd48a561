"""Run presets: the papers' models with their tasks and optimisation (science.md sections 3 and 6)."""

from __future__ import annotations

from typing import Any

# [P1]'s linear-attention-only models on constructed tokens: Adam(W), lr 1e-4 constant, wd 0.1, batch 256, clip 1.
_P1_LINEAR = dict(
    task="dynamics",
    tokens="constructed",
    per_device_train_batch_size=256,
    learning_rate=1e-4,
    lr_scheduler_type="constant",
    weight_decay=0.1,
    adam_beta2=0.999,
    max_grad_norm=1.0,
    max_steps=2000,
    eval_steps=250,
    save_steps=1000,
    eval_batches=4,
    per_device_eval_batch_size=256,
)

# [P1]'s full Transformers on dynamics: AdamW, warm-up 0 -> 7e-4 over 1000 steps, cosine to 1e-5, wd 0.05, batch 256.
_P1_TRANSFORMER = dict(
    task="dynamics",
    tokens="plain",
    per_device_train_batch_size=256,
    learning_rate=7e-4,
    min_learning_rate=1e-5,
    lr_scheduler_type="cosine",
    warmup_steps=1000,
    weight_decay=0.05,
    adam_beta2=0.999,
    max_grad_norm=1.0,
    max_steps=10000,
    eval_steps=500,
    save_steps=1000,
    per_device_eval_batch_size=256,
)

# Language models on the embedded docstring corpus at an equal, CPU-sized budget.
_LANGUAGE = dict(
    task="text",
    block_size=256,
    per_device_train_batch_size=16,
    learning_rate=1e-3,
    warmup_steps=100,
    lr_scheduler_type="cosine",
    min_learning_rate=1e-4,
    weight_decay=0.1,
    max_steps=2000,
    eval_steps=250,
    save_steps=500,
)

RUN_PRESETS: dict[str, dict[str, Any]] = {
    # The README's main job: a small softmax + mesa hybrid on the docstring corpus, minutes on a 2-core CPU.
    "docstrings-hybrid": dict(
        task="text",
        model_preset="lm-hybrid-mesa-2",
        config_overrides='{"hidden_size": 128, "mlp_type": "swiglu", "max_position_embeddings": 512}',
        vocab_size=4096,
        block_size=128,
        per_device_train_batch_size=16,
        learning_rate=2e-3,
        min_learning_rate=2e-4,
        warmup_steps=50,
        max_steps=600,
        eval_steps=100,
        save_steps=200,
    ),
    **{name: dict(_P1_LINEAR, model_preset=name) for name in ("linear-1", "linear-2", "linear-4", "linear-6", "mesa-1")},
    **{name: dict(_P1_TRANSFORMER, model_preset=name) for name in ("softmax-7", "hybrid-mesa")},
    **{
        name: dict(_LANGUAGE, model_preset=name)
        for name in (
            "lm-softmax-2",
            "lm-hybrid-mesa-2",
            "lm-hybrid-linear-2",
            "lm-softmax-4",
            "lm-hybrid-mesa-4",
            "lm-hybrid-linear-4",
            "mesanet",
        )
    },
}
