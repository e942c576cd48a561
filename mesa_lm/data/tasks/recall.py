"""Associative recall on tokens: MQAR (Zoology), noisy recall and selective copying (MAD), for causal LMs.

The samplers and the token layout are in `mesa_lm.data.recall`; a model trained here is a `MesaForCausalLM` whose
vocabulary is the task's `vocab_size`, scored on the answers only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..recall import SPECIAL_TOKENS, RecallVocabulary, sample_recall, sample_selective_copying
from ..synthetic import SyntheticTask
from . import register_task
from .base import at_least, option


@dataclass
class TokenTask(SyntheticTask):
    """A synthetic task on token ids: `sample` returns `input_ids` and `labels` (-100 where nothing is scored)."""

    model = "causal_lm"
    # What the recall harness varies: the option that sets how much is to be remembered.
    size_option = "num_pairs"

    def _fail(self, field: str, allowed: str) -> None:
        raise ValueError(f"{field}={getattr(self, field)!r} is invalid: {allowed}")

    @property
    def length(self) -> int:
        return self.seq_len

    @property
    def length_option(self) -> str:
        return f"seq_len={self.seq_len}"


@register_task
@dataclass
class MQARTask(TokenTask):
    """`k_1 v_1 ... k_N v_N`, then queries `k v` of earlier keys among blanks; scored on each query's value."""

    name = "mqar"
    description = "multi-query associative recall (Zoology)"

    vocab_size: int = option(128, "token vocabulary: 0 blank, 1 copy marker, then keys and values (and noise) in "
                             "disjoint ranges", check=at_least(4))
    seq_len: int = option(64, "sequence length T (tokens)", check=at_least(2))
    num_pairs: int = option(8, "key-value pairs in the context (distinct keys)", check=at_least(1))
    num_queries: int | None = option(None, "queries per sequence, each a distinct key (None: num_pairs)",
                                     check=at_least(1))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_queries is not None and self.num_queries > self.num_pairs:
            self._fail("num_queries", f"must be at most num_pairs={self.num_pairs} (each key is asked once)")
        if self.vocabulary.keys < self.num_pairs:
            self._fail("vocab_size", f"leaves {self.vocabulary.keys} key tokens for num_pairs={self.num_pairs} "
                       f"distinct keys; needs >= {SPECIAL_TOKENS + self.vocabulary.noise + 2 * self.num_pairs}")
        need = self.context_len + 2 * self.queries
        if self.seq_len < need:
            self._fail("seq_len", f"must be >= {need} ({self.context_len} context tokens and {self.queries} "
                       "query-answer pairs)")

    @property
    def vocabulary(self) -> RecallVocabulary:
        return RecallVocabulary(self.vocab_size)

    @property
    def queries(self) -> int:
        return self.num_pairs if self.num_queries is None else self.num_queries

    @property
    def noise_tokens(self) -> int:
        return 0

    @property
    def context_len(self) -> int:
        """Tokens before the query region."""
        return 2 * self.num_pairs + self.noise_tokens

    def sample(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return sample_recall(batch, generator, self.vocabulary, self.seq_len, self.num_pairs, self.queries,
                             self.noise_tokens)


@register_task
@dataclass
class NoisyRecallTask(MQARTask):
    """MQAR with noise tokens between the pairs and in the query region (MAD's noisy recall)."""

    name = "noisy_recall"
    description = "associative recall with noise tokens to ignore (MAD)"

    noise_fraction: float = option(0.25, "noise tokens in the context per pair token",
                                   check=(lambda v: 0 <= v <= 4, "a number from 0 to 4"))
    noise_vocab_size: int = option(16, "size of the noise vocabulary (the top of the vocabulary)", check=at_least(1))

    @property
    def vocabulary(self) -> RecallVocabulary:
        return RecallVocabulary(self.vocab_size, self.noise_vocab_size)

    @property
    def noise_tokens(self) -> int:
        return round(self.noise_fraction * 2 * self.num_pairs)


@register_task
@dataclass
class SelectiveCopyingTask(TokenTask):
    """Data tokens scattered among blanks, a copy marker, then the data tokens in order (MAD; Mamba)."""

    name = "selective_copying"
    description = "copy the scattered data tokens in order (MAD)"
    size_option = "num_tokens"

    vocab_size: int = option(128, "token vocabulary: 0 blank, 1 copy marker, then data tokens", check=at_least(4))
    seq_len: int = option(64, "sequence length T (tokens)", check=at_least(2))
    num_tokens: int = option(8, "data tokens to copy", check=at_least(1))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seq_len < 2 * self.num_tokens + 1:
            self._fail("seq_len", f"must be >= 2 * num_tokens + 1 = {2 * self.num_tokens + 1} (the data among "
                       "blanks, the marker, the copy)")

    @property
    def queries(self) -> int:
        return self.num_tokens

    def sample(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return sample_selective_copying(batch, generator, self.vocab_size, self.seq_len, self.num_tokens)
