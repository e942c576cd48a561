"""Perplexity of a causal LM on a text split: block-wise or sliding-window, per-position loss, in-context-learning
score, data-parallel over Accelerate processes (`gather_for_metrics`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ..data.corpus import stdlib_docstrings
from ..data.text import read_text_file
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


@dataclass
class TokenStream:
    """The split as one stream of token ids, `EOS t_1 EOS t_2 EOS ...` (each text follows an EOS, as in training,
    so that its first token is predicted like any other), with what text each token covers: `bytes` and `chars`
    (UTF-8 bytes and characters; 0 for the EOS separators) and `is_text` (False for the separators)."""

    ids: Tensor
    bytes: Tensor
    chars: Tensor
    is_text: Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: slice) -> "TokenStream":
        return TokenStream(self.ids[index], self.bytes[index], self.chars[index], self.is_text[index])


def text_covered(text: str, offsets: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """UTF-8 bytes and characters of `text` each token covers: a character belongs to the token that holds its last
    byte (a character split over tokens, as byte-level BPE splits an emoji, counts once, with the token that
    completes it), and the text between tokens to the token after it, the end of the text to the last token. So a
    text's tokens cover it exactly once."""
    nbytes, nchars, done = [], [], 0
    for j, (_, end) in enumerate(offsets):
        if j == len(offsets) - 1:
            end = len(text)
        elif offsets[j + 1][0] < end:  # the next token starts inside this one's last character: it completes it
            end = offsets[j + 1][0]
        end = max(done, end)
        piece = text[done:end]
        nbytes.append(len(piece.encode("utf-8")))
        nchars.append(len(piece))
        done = end
    return nbytes, nchars


def tokenize_stream(texts: list[str], tokenizer, batch: int = 256) -> TokenStream:
    """The texts as one `TokenStream` (needs a fast tokenizer: bytes come from its character offsets)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token to separate texts")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"the tokenizer {type(tokenizer).__name__} is not a fast tokenizer; bits per byte need its "
                         "character offsets")
    eos = tokenizer.eos_token_id
    ids, nbytes, nchars, is_text = [eos], [0], [0], [False]
    for start in range(0, len(texts), batch):
        chunk = [t for t in texts[start : start + batch] if t]
        if not chunk:
            continue
        # The backend, as `tokenize_into_blocks`: it skips the max-length warning meant for model inputs.
        for text, encoding in zip(chunk, tokenizer.backend_tokenizer.encode_batch(chunk, add_special_tokens=False)):
            token_ids = encoding.ids
            b, c = text_covered(text, encoding.offsets)
            ids += [*token_ids, eos]
            nbytes += [*b, 0]
            nchars += [*c, 0]
            is_text += [True] * len(token_ids) + [False]
    return TokenStream(torch.tensor(ids), torch.tensor(nbytes, dtype=torch.float64),
                       torch.tensor(nchars, dtype=torch.float64), torch.tensor(is_text))


def window_positions(length: int, window: int, stride: int) -> tuple[Tensor, Tensor]:
    """Stream positions (N, window) of windows of `window` tokens starting every `stride` tokens (-1 pads the last
    one), and which of their tokens are scored (0/1 weights).

    Each token of the stream is scored once, in the first window that holds it with some context: with
    `stride == window` (block-wise) every token but the first of each block; with a smaller stride a window scores only
    its last tokens, which see at least `window - stride` tokens of context. Weight at j means "predict token j from
    tokens < j".
    """
    if not 1 <= stride <= window:
        raise ValueError(f"stride={stride} is invalid: must be between 1 and the window of {window} tokens")
    if length < 2:
        raise ValueError(f"the text split has {length} token(s); at least 2 are needed to score one")
    positions, weights, scored_until = [], [], 0
    for begin in range(0, length, stride):
        end = min(begin + window, length)
        row = torch.full((window,), -1, dtype=torch.long)
        row[: end - begin] = torch.arange(begin, end)
        weight = torch.zeros(window)
        weight[max(scored_until - begin, 1) : end - begin] = 1.0
        positions.append(row)
        weights.append(weight)
        scored_until = end
        if end == length:
            break
    return torch.stack(positions), torch.stack(weights)


def make_windows(stream: Tensor, window: int, stride: int) -> tuple[Tensor, Tensor]:
    """Windows of token ids (N, window), right-padded with 0, and their scored-token weights (`window_positions`)."""
    positions, weights = window_positions(len(stream), window, stride)
    return _gather(stream, positions, 0), weights


def _gather(values: Tensor, positions: Tensor, pad) -> Tensor:
    out = values[positions.clamp(min=0)]
    out[positions < 0] = pad
    return out


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
    stream: TokenStream,
    window: int,
    stride: int | None = None,
    batch_size: int = 8,
    icl_positions: tuple[int, int] | None = None,
    accelerator=None,
    progress: bool = True,
    num_resamples: int = 1000,
) -> dict:
    """Perplexity `exp(mean token NLL)` over the stream's scored tokens (EOS separators included); bits per byte
    (character): the NLL of the scored text tokens / the UTF-8 bytes (characters) of the text they cover / ln 2;
    the mean loss per window position, and the ICL score `loss(late) - loss(early)` (negative when later tokens,
    with more context, are predicted better), both with bootstrap 90% intervals over windows.

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
    positions, weights = window_positions(len(stream), window, stride)
    ids = _gather(stream.ids, positions, 0)
    text_weights = weights * _gather(stream.is_text, positions, False)
    covered = torch.stack([_gather(stream.bytes, positions, 0), _gather(stream.chars, positions, 0)], -1)
    loader = accelerator.prepare(DataLoader(TensorDataset(ids, weights, text_weights, covered), batch_size=batch_size))
    model.to(accelerator.device).eval()
    metric, bits = load_metric("perplexity"), load_metric("bits_per_byte")
    rows_nll, rows_weight = [], []  # every window's masked losses, for bootstrap intervals over windows
    bar = tqdm(loader, desc="perplexity", disable=not (progress and accelerator.is_local_main_process))
    for batch_ids, batch_weights, batch_text, batch_covered in bar:
        token_losses = token_nll(model, batch_ids).double()
        nll, text_nll = token_losses * batch_weights, token_losses * batch_text
        covered = batch_covered * batch_text[..., None]
        nll, text_nll, covered, batch_weights = accelerator.gather_for_metrics((nll, text_nll, covered, batch_weights))
        metric.add_batch(nll_sum=nll.sum(1).tolist(), num_tokens=batch_weights.double().sum(1).tolist())
        bits.add_batch(text_nll_sum=text_nll.sum(1).tolist(), num_bytes=covered[..., 0].sum(1).tolist(),
                       num_chars=covered[..., 1].sum(1).tolist())
        rows_nll.append(nll.cpu())
        rows_weight.append(batch_weights.double().cpu())
    overall = {**metric.compute(), **bits.compute()}
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
        "bits_per_byte": overall["bits_per_byte"],
        "bits_per_character": overall["bits_per_character"],
        "text_nll": overall["text_nll"],
        "bytes_scored": int(overall["bytes"]),
        "characters_scored": int(overall["characters"]),
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
