"""Text data for language modelling: sources, a byte-level BPE tokenizer, and fixed-length blocks."""

from __future__ import annotations

from pathlib import Path

import torch

from .corpus import stdlib_docstrings

EOS_TOKEN = "<|endoftext|>"


def read_text_file(path: str | None, what: str) -> list[str]:
    """The paragraphs of a local text file; a missing or empty file is an error naming it."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{what} {path!r} does not exist or is not a file")
    text = file.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise ValueError(f"{what} {path!r} is empty")
    return [text]


def load_texts(
    train_file: str | None = None,
    validation_file: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    validation_fraction: float = 0.05,
) -> tuple[list[str], list[str]]:
    """Train and validation texts: local files, a `datasets` Hub name, or else the embedded docstring corpus.

    A single local file without a validation file is split: its last `validation_fraction` becomes validation.
    """
    if dataset_name:
        import datasets

        loaded = datasets.load_dataset(dataset_name, dataset_config_name)
        column = "text" if "text" in loaded["train"].column_names else loaded["train"].column_names[0]
        validation = "validation" if "validation" in loaded else "test"
        return list(loaded["train"][column]), list(loaded[validation][column]) if validation in loaded else []
    if train_file:
        train = read_text_file(train_file, "train_file")
        if validation_file:
            return train, read_text_file(validation_file, "validation_file")
        cut = int(len(train[0]) * (1 - validation_fraction))
        return [train[0][:cut]], [train[0][cut:]]
    if validation_file:
        raise ValueError("validation_file given without train_file")
    return stdlib_docstrings("train"), stdlib_docstrings("validation")


def train_bpe_tokenizer(texts: list[str], vocab_size: int, model_max_length: int):
    """A byte-level BPE (`tokenizers`) trained on `texts`, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=model_max_length,
    )


def tokenize_into_blocks(texts: list[str], tokenizer, block_size: int) -> torch.Tensor:
    """Tokenise, join the texts with EOS, and cut into (num_blocks, block_size) blocks; the remainder is dropped."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for start in range(0, len(texts), 1000):
        batch = texts[start : start + 1000]
        if getattr(tokenizer, "is_fast", False):  # the backend skips the max-length warning meant for model inputs
            encoded_batch = [e.ids for e in tokenizer.backend_tokenizer.encode_batch(batch, add_special_tokens=False)]
        else:
            encoded_batch = tokenizer(batch, add_special_tokens=False)["input_ids"]
        for encoded in encoded_batch:
            ids.extend(encoded)
            ids.append(eos)
    stream = torch.tensor(ids, dtype=torch.long)
    num_blocks = len(stream) // block_size
    if num_blocks < 1:
        raise ValueError(f"text of {len(stream)} tokens is shorter than one block of block_size={block_size}")
    return stream[: num_blocks * block_size].view(num_blocks, block_size)


__all__ = ["EOS_TOKEN", "load_texts", "read_text_file", "tokenize_into_blocks", "train_bpe_tokenizer"]
