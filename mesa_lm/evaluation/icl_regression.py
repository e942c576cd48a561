"""Few-shot in-context regression for `MesaForCausalRegression` models ([P1] few-shot transfer, Garg et al.).

A prompt is `[x_1, y_1, x_2, y_2, ...]` in one of four formats:
- `plain`: the pairs only;
- `eos`: a fixed EOS token (the zero vector) after every pair;
- `learned_eos`: an EOS token after every pair, learned by prompt tuning (Adam, model frozen, loss on the labels);
- `soft_prefix`: a learned prefix of `prefix_len` tokens before the prompt, plus a learned EOS, tuned together.
The model's prediction of `y_i` is read at the position of `x_i`; the error is `1/2 ||y_i - yhat_i||^2`, reported
against the number of in-context examples `i` (0-based: pair i sees i examples), with bootstrap intervals, raw and
normalised by the zero predictor on the same prompts. The baselines of `baselines.py` run on the same prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.dynamics import constructed_tokens
from ..data.regression import sample_scalar_regression, sample_vector_regression
from .baselines import run_regression_baselines, squared_error
from .bootstrap import bootstrap_curve
from .loading import describe_model, max_positions, token_layout
from .metrics import load_metric

Tensor = torch.Tensor

FORMATS = ("plain", "eos", "learned_eos", "soft_prefix")
TASKS = ("vector", "scalar")


@dataclass
class PromptSpec:
    """What the prompts look like: task, token size `dim`, label size `out_dim`, pairs, inputs and noise."""

    task: str = "vector"
    dim: int = 10
    pairs: int = 25
    distribution: str = "uniform"
    noise_std: float = 0.0

    @property
    def out_dim(self) -> int:
        return self.dim if self.task == "vector" else 1

    def sample(self, batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Inputs `x` (B, N, d) and label tokens `y` (B, N, d) (the scalar task's label token is `(y, 0, ..., 0)`)."""
        sampler = sample_vector_regression if self.task == "vector" else sample_scalar_regression
        tokens, _, _ = sampler(batch, self.pairs, self.dim, generator, self.distribution, self.noise_std)
        return tokens[:, 0::2], tokens[:, 1::2]


def assemble(x: Tensor, y: Tensor, fmt: str, eos: Tensor | None = None, prefix: Tensor | None = None):
    """The prompt tokens (B, T, d) of format `fmt`, and the positions of the `x_i` (N,), where `y_i` is predicted."""
    batch, pairs, dim = x.shape
    parts = [x, y]
    if fmt != "plain":
        eos = torch.zeros(dim, dtype=x.dtype) if eos is None else eos.to(x.dtype)
        parts.append(eos.expand(batch, pairs, dim))
    tokens = torch.stack(parts, dim=2).flatten(1, 2)
    positions = torch.arange(pairs) * len(parts)
    if prefix is not None:
        tokens = torch.cat([prefix.to(x.dtype).expand(batch, -1, -1), tokens], dim=1)
        positions = positions + prefix.shape[0]
    return tokens, positions


def prompt_length(fmt: str, pairs: int, prefix_len: int) -> int:
    return pairs * (2 if fmt == "plain" else 3) + (prefix_len if fmt == "soft_prefix" else 0)


class FewShotModel:
    """A frozen `MesaForCausalRegression` seen as a few-shot regressor: prompt tokens in, label predictions out."""

    def __init__(self, model, layout: str | None = None):
        self.model = model.eval().requires_grad_(False)
        self.layout = layout or token_layout(model.config)
        self.dim = model.config.output_dim if self.layout == "constructed" else model.config.input_dim

    def predict(self, tokens: Tensor, positions: Tensor, out_dim: int) -> Tensor:
        """Predictions (B, N, out_dim) at `positions`; the scalar label is the first output coordinate."""
        inputs = constructed_tokens(tokens) if self.layout == "constructed" else tokens
        predictions = self.model(inputs=inputs.float()).predictions
        return predictions[:, positions, :out_dim]


def tune_prompt(
    fewshot: FewShotModel,
    spec: PromptSpec,
    fmt: str,
    steps: int = 200,
    batch: int = 64,
    lr: float = 1e-3,
    prefix_len: int = 20,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Tensor]:
    """Prompt tuning ([P1]: 5000 steps, batch 256, Adam 1e-3): learn the EOS token (and for `soft_prefix` the prefix)
    on fresh prompts with the model frozen, minimising the mean label error. The EOS starts at the fixed EOS (zeros),
    the prefix at small random tokens. Returns the learned tokens."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed + 101)
    eos = torch.zeros(spec.dim, requires_grad=True)
    learned = {"eos": eos}
    if fmt == "soft_prefix":
        # near the fixed-EOS prompt, but not at 0: for linear attention a zero token is a saddle (its key and value
        # are both linear in it, so the loss has no gradient there)
        prefix = (0.1 * torch.randn(prefix_len, spec.dim, generator=generator)).requires_grad_(True)
        learned["prefix"] = prefix
    optimizer = torch.optim.Adam(learned.values(), lr=lr)
    for _ in tqdm(range(steps), desc=f"tune {fmt}", disable=not progress, leave=False):
        x, y = spec.sample(batch, generator)
        tokens, positions = assemble(x, y, fmt, eos, learned.get("prefix"))
        predictions = fewshot.predict(tokens, positions, spec.out_dim)
        loss = 0.5 * (predictions - y[..., : spec.out_dim]).pow(2).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {name: value.detach() for name, value in learned.items()}


@torch.no_grad()
def model_predictions(
    fewshot: FewShotModel, x: Tensor, y: Tensor, fmt: str, out_dim: int, learned: dict[str, Tensor], batch_size: int
) -> Tensor:
    """The model's label predictions (P, N, out_dim) on the given prompts in format `fmt`."""
    predictions = []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        tokens, positions = assemble(xb, yb, fmt, learned.get("eos"), learned.get("prefix"))
        predictions.append(fewshot.predict(tokens, positions, out_dim))
    return torch.cat(predictions)


def _curves(errors: Tensor, zero: Tensor, num_resamples: int, seed: int) -> dict:
    return {
        "error": bootstrap_curve(errors, None, num_resamples, seed=seed).as_dict(),
        "normalised": bootstrap_curve(errors, zero, num_resamples, seed=seed).as_dict(),
    }


def evaluate_icl_regression(
    model,
    task: str = "vector",
    formats: tuple[str, ...] = ("plain", "eos", "learned_eos"),
    pairs: int = 25,
    num_prompts: int = 1280,
    num_tune_prompts: int = 512,
    distribution: str = "uniform",
    noise_std: float = 0.0,
    batch_size: int = 256,
    tune_steps: int = 200,
    tune_batch: int = 64,
    tune_lr: float = 1e-3,
    prefix_len: int = 20,
    knn: int = 3,
    num_resamples: int = 1000,
    seed: int = 0,
    progress: bool = True,
    tokens: str | None = None,
) -> dict:
    """Error against the number of in-context examples for the model in each format and for every baseline, on the
    same `num_prompts` test prompts (baselines tuned on `num_tune_prompts` separate ones). JSON-ready record.
    `tokens` is the model's input layout (`plain` or `constructed`; the harness reads it from the saved task; None:
    inferred from the config's shapes, for models in memory)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown prompt format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if num_prompts < 2 or pairs < 1:
        raise ValueError(f"need at least 2 prompts and 1 pair, got num_prompts={num_prompts}, pairs={pairs}")
    fewshot = FewShotModel(model, tokens)
    config = model.config
    if fewshot.layout == "plain" and task == "vector" and config.output_dim != config.input_dim:
        raise ValueError(
            f"the vector task needs output_dim == input_dim, but this model maps {config.input_dim} -> "
            f"{config.output_dim} dimensions; use --task scalar"
        )
    limit = max_positions(config)
    for fmt in formats:
        length = prompt_length(fmt, pairs, prefix_len)
        if limit is not None and length > limit:
            raise ValueError(
                f"prompt of {length} tokens ({pairs} pairs, format {fmt}) exceeds the model's maximum of {limit} "
                "positions; pass fewer --pairs"
            )
    spec = PromptSpec(task, fewshot.dim, pairs, distribution, noise_std)
    test = spec.sample(num_prompts, torch.Generator().manual_seed(seed + 1))
    tune = spec.sample(num_tune_prompts, torch.Generator().manual_seed(seed + 2))
    zero = squared_error(torch.zeros_like(test[1]), test[1], spec.out_dim)
    curves = {"zero": _curves(zero, zero, num_resamples, seed)}
    metric = load_metric("icl_regression_error")
    learned_tokens, overall = {}, {}
    for fmt in formats:
        learned = {}
        if fmt in ("learned_eos", "soft_prefix"):
            learned = tune_prompt(fewshot, spec, fmt, tune_steps, tune_batch, tune_lr, prefix_len, seed, progress)
            learned_tokens[fmt] = {k: v.tolist() for k, v in learned.items()}
        predictions = model_predictions(fewshot, *test, fmt, spec.out_dim, learned, batch_size)
        curves[f"model/{fmt}"] = _curves(squared_error(predictions, test[1], spec.out_dim), zero, num_resamples, seed)
        overall[fmt] = metric.compute(
            predictions=predictions.flatten(0, 1).tolist(), references=test[1][..., : spec.out_dim].flatten(0, 1).tolist()
        )
    baseline_errors, tuned = run_regression_baselines(tune, test, spec.out_dim, knn)
    for name, errors in baseline_errors.items():
        curves[f"baseline/{name}"] = _curves(errors, zero, num_resamples, seed)
    return {
        "harness": "icl_regression",
        "task": task,
        "dim": spec.dim,
        "out_dim": spec.out_dim,
        "pairs": pairs,
        "num_prompts": num_prompts,
        "distribution": distribution,
        "noise_std": noise_std,
        "token_layout": fewshot.layout,
        "formats": list(formats),
        "tune_steps": tune_steps,
        "x": list(range(pairs)),
        "x_label": "in-context examples",
        "curves": curves,
        "overall": overall,
        "baseline_hyperparameters": tuned,
        "learned_tokens": learned_tokens,
    }


def run_icl_regression(checkpoint: str, **options) -> dict:
    """Load a `MesaForCausalRegression` checkpoint and run `evaluate_icl_regression` with `options`."""
    from .loading import load_regression_model

    model = load_regression_model(checkpoint, "icl_regression")
    result = evaluate_icl_regression(model, **options)
    return {"model": describe_model(model, checkpoint), **result}
