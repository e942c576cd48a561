"""Language modelling on text: a local file, a `datasets` dataset, or the embedded docstring corpus, tokenised by a
byte-level BPE trained on the training split (or an existing tokenizer), cut into blocks."""

from __future__ import annotations

from dataclasses import dataclass

from . import register_task
from .base import Task, at_least, option


@register_task
@dataclass
class TextTask(Task):
    """The data themselves are read and tokenised by the training loop (`mesa_lm.data.text`)."""

    name = "text"
    model = "causal_lm"
    description = "next-token prediction on text"

    train_file: str | None = option(None, "a local training text file (default: the embedded docstring corpus)")
    validation_file: str | None = option(None, "a local validation text file (default: the last 5% of train_file)")
    dataset_name: str | None = option(None, "a `datasets` Hub dataset name (needs the network)")
    dataset_config_name: str | None = option(None, "the dataset's configuration name")
    tokenizer_name: str | None = option(None, "an existing tokenizer name or path instead of training a BPE")
    vocab_size: int = option(4096, "vocabulary size of the byte-level BPE trained on the train split",
                             check=(lambda v: v >= 260, "an integer >= 260 (256 bytes and special tokens)"))
    block_size: int = option(128, "tokens per training block", check=at_least(1))
