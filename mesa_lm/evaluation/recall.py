"""Recall accuracy of a causal LM on the recall tasks (`mesa_lm.data.tasks.recall`) over a grid of sizes (number of
key-value pairs, or tokens to copy) and sequence lengths, with bootstrap intervals over sequences."""

from __future__ import annotations

import dataclasses
import time

import torch

from ..data.recall import answer_accuracy
from .bootstrap import bootstrap_curve
from .loading import max_positions

# Held-out sequences: training uses stream 0 and train_lm.py's evaluation stream 1.
RECALL_STREAM = 2


def default_sizes(trained: int) -> list[int]:
    """A quarter, half, once and twice the trained size (distinct, >= 1)."""
    return sorted({max(1, trained // 4), max(1, trained // 2), trained, 2 * trained})


def default_seq_lens(trained: int, limit: int | None) -> list[int]:
    """The trained length and twice it, within the model's limit."""
    return [t for t in (trained, 2 * trained) if limit is None or t <= limit] or [trained]


@torch.no_grad()
def sequence_accuracy(model, task, num_sequences: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Answers predicted exactly and answers, per held-out sequence of `task` (P,) each."""
    correct, answers = [], []
    for i, start in enumerate(range(0, num_sequences, batch_size)):
        batch = task.global_batch(i, min(batch_size, num_sequences - start), stream=RECALL_STREAM)
        c, n = answer_accuracy(model(input_ids=batch["input_ids"]).logits, batch["labels"])
        correct.append(c)
        answers.append(n)
    return torch.cat(correct), torch.cat(answers)


def evaluate_recall(
    model,
    task,
    sizes: list[int],
    seq_lens: list[int],
    num_sequences: int = 512,
    batch_size: int = 64,
    num_resamples: int = 1000,
    progress: bool = True,
) -> dict:
    """Accuracy (answers right / answers) at every (size, seq_len) of the grid, each on `num_sequences` fresh
    sequences of `task` with that size and length, and its 90% bootstrap interval over sequences. Settings the task
    or the model cannot hold (too short for the pairs, longer than the model's positions) are listed as skipped."""
    from tqdm.auto import tqdm

    if num_sequences < 2:
        raise ValueError(f"num_sequences={num_sequences} is invalid: must be >= 2 for an interval")
    model.eval()
    limit = max_positions(model.config)
    points, correct, answers, skipped = [], [], [], []
    grid = [(size, length) for length in seq_lens for size in sizes]
    started = time.perf_counter()
    for size, length in tqdm(grid, desc="recall", disable=not progress):
        if limit is not None and length > limit:
            skipped.append({"size": size, "seq_len": length, "reason": f"longer than the model's {limit} positions"})
            continue
        try:
            variant = dataclasses.replace(task, **{task.size_option: size, "seq_len": length})
        except ValueError as error:  # e.g. the sequence cannot hold that many pairs and queries
            skipped.append({"size": size, "seq_len": length, "reason": str(error)})
            continue
        c, n = sequence_accuracy(model, variant, num_sequences, batch_size)
        points.append({"size": size, "seq_len": length})
        correct.append(c)
        answers.append(n)
    if not points:
        raise ValueError("no (size, seq_len) setting of the grid fits the task and the model: "
                         + "; ".join(f"{s['size']}, {s['seq_len']}: {s['reason']}" for s in skipped))
    curve = bootstrap_curve(torch.stack(correct, 1), torch.stack(answers, 1), num_resamples)
    for i, point in enumerate(points):
        point.update(accuracy=curve.mean[i], low=curve.low[i], high=curve.high[i],
                     answers=int(answers[i].sum()), sequences=num_sequences)
    return {"size_option": task.size_option, "points": points, "skipped": skipped,
            "seconds": time.perf_counter() - started}
