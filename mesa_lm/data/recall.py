"""Associative-recall tasks on token ids, generated on the fly and reproducible from (seed, step).

- `mqar`, multi-query associative recall (Zoology, Arora et al. 2023): `num_pairs` key-value pairs
  `k_1 v_1 ... k_N v_N` (distinct keys), then a query region where `num_queries` earlier keys reappear, each followed
  by its value, at random places among blank tokens. The model must predict the value from the key.
- `noisy_recall` (MAD, Poli et al. 2024): the same, with tokens of a separate noise vocabulary scattered between the
  pairs (`noise_fraction` of the context) and filling the query region: the model must ignore them.
- `selective_copying` (MAD; Gu & Dao 2023): `num_pairs` data tokens at random places among blanks, then a copy
  marker, then the data tokens in their order.

A batch is `input_ids` (B, T) and `labels` (B, T): -100 except at answer tokens, where it is the token itself, so
the model's next-token loss (`labels` shifted inside) scores exactly the answers, each predicted from the position
before it. Vocabulary: 0 blank, 1 copy marker, then keys, values (and noise) in disjoint ranges; selective copying
draws data tokens from everything after the marker. As for `SyntheticTask`, a global batch is a pure function of
`(seed, stream, step)`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

RECALL_TASKS = ("mqar", "noisy_recall", "selective_copying")
BLANK, COPY = 0, 1
SPECIAL_TOKENS = 2
IGNORE = -100


@dataclass(frozen=True)
class RecallTask:
    """One recall task; `sample(batch, generator)` returns `input_ids` and `labels` (see the module docstring)."""

    name: str = "mqar"
    vocab_size: int = 128
    seq_len: int = 64
    num_pairs: int = 8
    num_queries: int | None = None  # mqar / noisy_recall: queries per sequence; default num_pairs
    noise_fraction: float = 0.25  # noisy_recall: noise tokens in the context per pair token
    noise_vocab_size: int = 16  # noisy_recall: size of the noise vocabulary (taken from the top of the vocabulary)
    seed: int = 0

    def __post_init__(self) -> None:
        def fail(field: str, allowed: str) -> None:
            raise ValueError(f"{field}={getattr(self, field)!r} is invalid: {allowed}")

        if self.name not in RECALL_TASKS:
            fail("name", f"allowed recall tasks are {', '.join(RECALL_TASKS)}")
        for field in ("vocab_size", "seq_len", "num_pairs", "noise_vocab_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(field, "must be an integer >= 1")
        if self.num_queries is not None and (
            isinstance(self.num_queries, bool) or not isinstance(self.num_queries, int)
            or not 1 <= self.num_queries <= self.num_pairs
        ):
            fail("num_queries", f"must be an integer from 1 to num_pairs={self.num_pairs}, or None (= num_pairs)")
        if not (isinstance(self.noise_fraction, (int, float)) and 0 <= self.noise_fraction <= 4):
            fail("noise_fraction", "must be a number from 0 to 4")
        if self.name == "selective_copying":
            if self.vocab_size < SPECIAL_TOKENS + 2:
                fail("vocab_size", f"must be >= {SPECIAL_TOKENS + 2} (blank, copy marker, >= 2 data tokens)")
            if self.seq_len < 2 * self.num_pairs + 1:
                fail("seq_len", f"must be >= 2 * num_pairs + 1 = {2 * self.num_pairs + 1} (data among blanks, "
                                "marker, copy)")
            return
        if self.num_keys < self.num_pairs:
            fail("vocab_size", f"leaves {self.num_keys} key tokens, fewer than num_pairs={self.num_pairs} distinct "
                               f"keys; needs >= {self._min_vocab()}")
        if self.seq_len < self.context_len + 2 * self.queries:
            fail("seq_len", f"must be >= {self.context_len + 2 * self.queries} ({self.context_len} context tokens "
                            f"and {self.queries} query-answer pairs)")

    # ----- layout -------------------------------------------------------------------------------------------------
    @property
    def queries(self) -> int:
        return self.num_pairs if self.num_queries is None else self.num_queries

    @property
    def noise_tokens(self) -> int:
        """Noise tokens scattered between the context's pairs (noisy_recall)."""
        return round(self.noise_fraction * 2 * self.num_pairs) if self.name == "noisy_recall" else 0

    @property
    def context_len(self) -> int:
        return 2 * self.num_pairs + self.noise_tokens

    @property
    def _reserved_noise(self) -> int:
        return self.noise_vocab_size if self.name == "noisy_recall" else 0

    @property
    def num_keys(self) -> int:
        return (self.vocab_size - SPECIAL_TOKENS - self._reserved_noise) // 2

    def _min_vocab(self) -> int:
        return SPECIAL_TOKENS + self._reserved_noise + 2 * self.num_pairs

    @property
    def first_value(self) -> int:
        return SPECIAL_TOKENS + self.num_keys

    @property
    def first_noise(self) -> int:
        return self.vocab_size - self._reserved_noise

    @property
    def length(self) -> int:
        return self.seq_len

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ----- sampling -----------------------------------------------------------------------------------------------
    def sample(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if self.name == "selective_copying":
            return self._selective_copying(batch, generator)
        return self._recall(batch, generator)

    def global_batch(self, step: int, size: int, stream: int = 0) -> dict[str, torch.Tensor]:
        """The batch of optimizer step `step` (all processes' rows); `stream` 1 is the held-out evaluation data."""
        generator = torch.Generator().manual_seed(hash((self.seed, stream, step)) % (2**63))
        return self.sample(size, generator)

    def _recall(self, batch: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        n, q, m, T = self.num_pairs, self.queries, self.noise_tokens, self.seq_len
        rows = torch.arange(batch)[:, None]
        keys = SPECIAL_TOKENS + _distinct(batch, self.num_keys, n, g)  # (B, N) distinct per row
        values = self.first_value + torch.randint(0, self.vocab_size - self._reserved_noise - self.first_value,
                                                  (batch, n), generator=g)
        ids = torch.full((batch, T), BLANK, dtype=torch.long)
        # Context: N pairs (2 tokens) and m noise tokens (1 each) in a random order, pairs kept adjacent.
        order = torch.rand(batch, n + m, generator=g).argsort(-1)  # unit j < n is pair j, others noise
        widths = torch.where(order < n, 2, 1)
        starts = widths.cumsum(-1) - widths
        is_pair = order < n
        pair_start = torch.empty(batch, n, dtype=torch.long)
        pair_start[rows.expand_as(order)[is_pair], order[is_pair]] = starts[is_pair]
        ids[rows, pair_start] = keys
        ids[rows, pair_start + 1] = values
        if m:
            noise_at = starts[~is_pair].view(batch, m)
            ids[rows, noise_at] = self.first_noise + torch.randint(0, self._reserved_noise, (batch, m), generator=g)
        # Query region: q of its 2-token slots, at random, hold a queried key and its value.
        region = T - self.context_len
        slots = _distinct(batch, region // 2, q, g).sort(-1).values
        asked = _distinct(batch, n, q, g)  # which pairs are queried, each at most once
        query_at = self.context_len + 2 * slots
        if self.name == "noisy_recall":
            filler = self.first_noise + torch.randint(0, self._reserved_noise, (batch, region), generator=g)
            ids[:, self.context_len:] = filler
        ids[rows, query_at] = keys.gather(1, asked)
        ids[rows, query_at + 1] = values.gather(1, asked)
        labels = torch.full_like(ids, IGNORE)
        labels[rows, query_at + 1] = values.gather(1, asked)
        return {"input_ids": ids, "labels": labels}

    def _selective_copying(self, batch: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        n, T = self.num_pairs, self.seq_len
        rows = torch.arange(batch)[:, None]
        region = T - n - 1
        data = SPECIAL_TOKENS + torch.randint(0, self.vocab_size - SPECIAL_TOKENS, (batch, n), generator=g)
        places = _distinct(batch, region, n, g).sort(-1).values
        ids = torch.full((batch, T), BLANK, dtype=torch.long)
        ids[rows, places] = data
        ids[:, region] = COPY
        ids[:, region + 1:] = data
        labels = torch.full_like(ids, IGNORE)
        labels[:, region + 1:] = data
        return {"input_ids": ids, "labels": labels}


def _distinct(batch: int, population: int, count: int, g: torch.Generator) -> torch.Tensor:
    """(batch, count) indices drawn without replacement from range(population), independently per row."""
    return torch.rand(batch, population, generator=g).argsort(-1)[:, :count]


def answer_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: answers predicted exactly (argmax at the position before each answer) and answers, (B,) each."""
    predicted = logits[:, :-1].argmax(-1)
    target = labels[:, 1:]
    scored = target != IGNORE
    return ((predicted == target) & scored).sum(-1), scored.sum(-1)
