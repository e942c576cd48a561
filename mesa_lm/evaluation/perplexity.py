"""Perplexity of a causal LM on a text split: block-wise or sliding-window, per-position loss, in-context-learning
score, data-parallel over Accelerate processes (`gather_for_metrics`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ..data.corpus import stdlib_docstrings
from ..data.text import read_text_file, tokenize_into_blocks
from .bootstrap import bootstrap_curve, bootstrap_difference
from .loading import describe_model, max_positions
from .metrics import load_metric

Tensor = torch.Tensor


def load_split(
    text_file: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    split: str = "validation",
    text_column: str = "text",
) -> tuple[list[str], str]:
    """The texts of a local file, a `datasets` split, or else the embedded docstring corpus; and a name for them."""
    if text_file:
        texts, name = read_text_file(text_file, "text_file"), text_file
    elif dataset_name:
        import datasets

        data = datasets.load_dataset(dataset_name, dataset_config_name, split=split)
        if text_column not in data.column_names:
            raise ValueError(f"dataset {dataset_name!r} has no column {text_column!r}; columns: {data.column_names}")
        texts, name = list(data[text_column]), f"{dataset_name}:{split}"
    else:
        texts, name = stdlib_docstrings(split), f"stdlib_docstrings:{split}"
    if not any(t.strip() for t in texts):
        raise ValueError(f"text split {name!r} is empty")
    return texts, name


def tokenize_stream(texts: list[str], tokenizer) -> Tensor:
    """All texts as one stream of token ids, each text followed by EOS (as in training)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token to separate texts")
    return tokenize_into_blocks(texts, tokenizer, 1).flatten()  # blocks of one token: the stream, nothing dropped


def make_windows(stream: Tensor, window: int, stride: int) -> tuple[Tensor, Tensor]:
    """Windows of `window` tokens starting every `stride` tokens, and which of their tokens are scored.

    Each token of the stream is scored once, in the first window that holds it with some context: with
    `stride == window` (block-wise) every token but the first of each block; with a smaller stride a window scores only
    its last tokens, which see at least `window - stride` tokens of context. Returns ids (N, window), right-padded
    with 0 in the last window, and 0/1 weights (N, window); weight at j means "predict token j from tokens < j".
    """
    if not 1 <= stride <= window:
        raise ValueError(f"stride={stride} is invalid: must be between 1 and the window of {window} tokens")
    length = len(stream)
    if length < 2:
        raise ValueError(f"the text split has {length} token(s); at least 2 are needed to score one")
    ids, weights, scored_until = [], [], 0
    for begin in range(0, length, stride):
        end = min(begin + window, length)
        row = torch.zeros(window, dtype=torch.long)
        row[: end - begin] = stream[begin:end]
        weight = torch.zeros(window)
        first = max(scored_until - begin, 1)
        weight[first : end - begin] = 1.0
        ids.append(row)
        weights.append(weight)
        scored_until = end
        if end == length:
            break
    return torch.stack(ids), torch.stack(weights)


def token_nll(model, ids: Tensor) -> Tensor:
    """Next-token negative log-likelihood (B, T): entry j is `-log p(token j | tokens < j)`, 0 at j = 0."""
    logits = model(input_ids=ids).logits.float()
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    return F.pad(nll, (1, 0))


def default_icl_positions(window: int) -> tuple[int, int]:
    """[P1] / Olsson et al.: tokens 50 and 500, or a tenth of the window and its last token if it is shorter."""
    return (50, 500) if window > 500 else (max(1, window // 10), window - 1)


@torch.no_grad()
def evaluate_perplexity(
    model,
    stream: Tensor,
    window: int,
    stride: int | None = None,
    batch_size: int = 8,
    icl_positions: tuple[int, int] | None = None,
    accelerator=None,
    progress: bool = True,
    num_resamples: int = 1000,
) -> dict:
    """Perplexity `exp(mean token NLL)` over the stream, the mean loss per window position, and the ICL score
    `loss(late) - loss(early)` (negative when later tokens, with more context, are predicted better), both with
    bootstrap 90% intervals over windows.

    Windows are split over the processes of `accelerator` and gathered with `gather_for_metrics`, so any number of
    processes gives the same numbers. The model is not wrapped (no gradients), only moved to the device.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    limit = max_positions(model.config)
    if limit is not None and window > limit:
        raise ValueError(f"window of {window} tokens exceeds the model's maximum of {limit} positions")
    stride = window if stride is None else stride
    early, late = icl_positions if icl_positions is not None else default_icl_positions(window)
    if not 0 < early < late < window:
        raise ValueError(f"icl positions ({early}, {late}) are invalid: need 0 < early < late < window={window}")
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    ids, weights = make_windows(stream, window, stride)
    loader = accelerator.prepare(DataLoader(TensorDataset(ids, weights), batch_size=batch_size))
    model.to(accelerator.device).eval()
    metric = load_metric("perplexity")
    rows_nll, rows_weight = [], []  # every window's masked losses, for bootstrap intervals over windows
    bar = tqdm(loader, desc="perplexity", disable=not (progress and accelerator.is_local_main_process))
    for batch_ids, batch_weights in bar:
        nll = token_nll(model, batch_ids) * batch_weights
        nll, batch_weights = accelerator.gather_for_metrics((nll, batch_weights))
        metric.add_batch(nll_sum=nll.double().sum(1).tolist(), num_tokens=batch_weights.double().sum(1).tolist())
        rows_nll.append(nll.double().cpu())
        rows_weight.append(batch_weights.double().cpu())
    overall = metric.compute()
    nll, weight = torch.cat(rows_nll), torch.cat(rows_weight)
    scored = weight.sum(0) > 0
    curve = {"mean": [None] * window, "low": [None] * window, "high": [None] * window}
    if len(nll) >= 2:
        band = bootstrap_curve(nll[:, scored], weight[:, scored], num_resamples, seed=0)
        for key in curve:
            for position, value in zip(scored.nonzero()[:, 0].tolist(), getattr(band, key)):
                curve[key][position] = value
    else:
        for position in scored.nonzero()[:, 0].tolist():
            curve["mean"][position] = curve["low"][position] = curve["high"][position] = nll[0, position].item()
    icl = icl_low = icl_high = None
    if scored[early] and scored[late] and len(nll) >= 2:
        icl, icl_low, icl_high = bootstrap_difference(nll, weight, late, early, num_resamples)
    return {
        "perplexity": overall["perplexity"],
        "mean_nll": overall["mean_nll"],
        "tokens_scored": int(overall["tokens"]),
        "windows": len(ids),
        "window": window,
        "stride": stride,
        "loss_per_position": curve["mean"],
        "loss_per_position_interval": [curve["low"], curve["high"]],
        "icl_score": icl,
        "icl_score_interval": [icl_low, icl_high],
        "icl_positions": [early, late],
        "num_processes": accelerator.num_processes,
    }


def run_perplexity(
    checkpoint: str,
    tokenizer_path: str | None = None,
    text_file: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    split: str = "validation",
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    icl_positions: tuple[int, int] | None = None,
    max_tokens: int | None = None,
    accelerator=None,
    progress: bool = True,
) -> dict:
    """The whole harness: load the model and tokenizer, read and tokenise the split, evaluate. Returns the result
    record (JSON-ready)."""
    from transformers import AutoTokenizer

    from .loading import load_causal_lm

    model = load_causal_lm(checkpoint, "perplexity")
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or checkpoint)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(
            f"no tokenizer found at {tokenizer_path or checkpoint!r} ({str(error).splitlines()[0]}); pass --tokenizer"
        )
    texts, source = load_split(text_file, dataset_name, dataset_config_name, split)
    stream = tokenize_stream(texts, tokenizer)
    if max_tokens is not None:
        stream = stream[:max_tokens]
    if window is None:
        window = max_positions(model.config) or 1024
        if 0 < getattr(tokenizer, "model_max_length", 0) < window:
            window = tokenizer.model_max_length
    result = evaluate_perplexity(model, stream, window, stride, batch_size, icl_positions, accelerator, progress)
    return {
        "harness": "perplexity",
        "model": describe_model(model, checkpoint),
        "data": {"source": source, "tokens": len(stream)},
        **result,
    }
