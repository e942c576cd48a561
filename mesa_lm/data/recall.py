"""Samplers of the associative-recall tasks (`mesa_lm.data.tasks.recall`): token batches with answer labels.

- MQAR, multi-query associative recall (Zoology, Arora et al. 2023): `num_pairs` key-value pairs
  `k_1 v_1 ... k_N v_N` (distinct keys), then a query region where `num_queries` of the keys reappear, each followed
  by its value, at random places among blank tokens. The model must predict the value from the key.
- Noisy recall (MAD, Poli et al. 2024): the same with tokens of a separate noise vocabulary scattered between the
  pairs and filling the query region; the model must ignore them.
- Selective copying (MAD; Gu & Dao 2023): `num_tokens` data tokens at random places among blanks, then a copy marker,
  then the data tokens in their order.

A batch is `input_ids` (B, T) and `labels` (B, T): `IGNORE` except at answer tokens, where it is the token itself, so
a causal LM's next-token loss (labels shifted inside) scores exactly the answers, each predicted from the position
before it. Vocabulary: 0 blank, 1 copy marker, then keys, values and noise in disjoint ranges (`RecallVocabulary`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BLANK, COPY = 0, 1
SPECIAL_TOKENS = 2
IGNORE = -100


@dataclass(frozen=True)
class RecallVocabulary:
    """Disjoint token ranges: keys `[2, 2 + keys)`, values next, then `noise` noise tokens up to `size`."""

    size: int
    noise: int = 0

    @property
    def keys(self) -> int:
        return (self.size - SPECIAL_TOKENS - self.noise) // 2

    @property
    def first_value(self) -> int:
        return SPECIAL_TOKENS + self.keys

    @property
    def values(self) -> int:
        return self.size - self.noise - self.first_value

    @property
    def first_noise(self) -> int:
        return self.size - self.noise


def _distinct(batch: int, population: int, count: int, g: torch.Generator) -> torch.Tensor:
    """(batch, count) indices drawn without replacement from range(population), independently per row."""
    return torch.rand(batch, population, generator=g).argsort(-1)[:, :count]


def sample_recall(batch: int, generator: torch.Generator, vocab: RecallVocabulary, seq_len: int, num_pairs: int,
                  num_queries: int, noise_tokens: int = 0) -> dict[str, torch.Tensor]:
    """MQAR (`noise_tokens = 0`, `vocab.noise = 0`) or noisy recall: a context of `num_pairs` adjacent key-value
    pairs and `noise_tokens` noise tokens in random order, then `num_queries` distinct keys with their values at
    random 2-token slots of the query region (blank, or noise when the vocabulary has noise)."""
    g, n, q, m = generator, num_pairs, num_queries, noise_tokens
    rows = torch.arange(batch)[:, None]
    keys = SPECIAL_TOKENS + _distinct(batch, vocab.keys, n, g)
    values = vocab.first_value + torch.randint(0, vocab.values, (batch, n), generator=g)
    ids = torch.full((batch, seq_len), BLANK, dtype=torch.long)
    # The context: units j < n are the pairs (2 tokens), the others noise (1 token), in a random order.
    order = torch.rand(batch, n + m, generator=g).argsort(-1)
    is_pair = order < n
    widths = torch.where(is_pair, 2, 1)
    starts = widths.cumsum(-1) - widths
    pair_start = torch.empty(batch, n, dtype=torch.long)
    pair_start[rows.expand_as(order)[is_pair], order[is_pair]] = starts[is_pair]
    ids[rows, pair_start] = keys
    ids[rows, pair_start + 1] = values
    context = 2 * n + m
    if vocab.noise:
        ids[:, context:] = vocab.first_noise + torch.randint(0, vocab.noise, (batch, seq_len - context), generator=g)
    if m:
        ids[rows, starts[~is_pair].view(batch, m)] = vocab.first_noise + torch.randint(0, vocab.noise, (batch, m),
                                                                                        generator=g)
    slots = _distinct(batch, (seq_len - context) // 2, q, g).sort(-1).values
    asked = _distinct(batch, n, q, g)  # which pairs are queried, each at most once
    query_at = context + 2 * slots
    ids[rows, query_at] = keys.gather(1, asked)
    ids[rows, query_at + 1] = values.gather(1, asked)
    labels = torch.full_like(ids, IGNORE)
    labels[rows, query_at + 1] = values.gather(1, asked)
    return {"input_ids": ids, "labels": labels}


def sample_selective_copying(batch: int, generator: torch.Generator, vocab_size: int, seq_len: int,
                             num_tokens: int) -> dict[str, torch.Tensor]:
    """`num_tokens` data tokens (any token after the marker) at random places of the first `seq_len - num_tokens
    - 1` positions, blanks elsewhere, then the copy marker and the data tokens in order (the answers)."""
    g, n = generator, num_tokens
    rows = torch.arange(batch)[:, None]
    region = seq_len - n - 1
    data = SPECIAL_TOKENS + torch.randint(0, vocab_size - SPECIAL_TOKENS, (batch, n), generator=g)
    ids = torch.full((batch, seq_len), BLANK, dtype=torch.long)
    ids[rows, _distinct(batch, region, n, g).sort(-1).values] = data
    ids[:, region] = COPY
    ids[:, region + 1:] = data
    labels = torch.full_like(ids, IGNORE)
    labels[:, region + 1:] = data
    return {"input_ids": ids, "labels": labels}


def answer_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: answers predicted exactly (argmax at the position before each answer) and answers, (B,) each."""
    predicted = logits[:, :-1].argmax(-1)
    target = labels[:, 1:]
    scored = target != IGNORE
    return ((predicted == target) & scored).sum(-1), scored.sum(-1)
