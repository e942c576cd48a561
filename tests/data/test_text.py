"""Text data: the embedded docstring corpus, the BPE tokenizer, blocks and their visiting order."""

import torch

from mesa_lm.data.corpus import stdlib_docstrings
from mesa_lm.data.text import load_texts, tokenize_into_blocks, train_bpe_tokenizer
from mesa_lm.training.data import TextData


def test_docstring_corpus_is_deterministic_disjoint_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MESA_LM_CACHE", str(tmp_path))
    train, validation = stdlib_docstrings("train"), stdlib_docstrings("validation")
    assert len(train) > 1000 and len(validation) > 50
    assert not set(train) & set(validation)
    assert sum(map(len, train)) > 500_000
    assert list(tmp_path.iterdir())  # cached
    assert stdlib_docstrings("train") == train  # from the cache, identical


def test_single_file_is_split_and_blocks_cover_the_stream(tmp_path):
    (tmp_path / "t.txt").write_text("the quick brown fox jumps over the lazy dog. " * 300)
    train, validation = load_texts(train_file=str(tmp_path / "t.txt"))
    assert len(validation[0]) < len(train[0]) and validation[0]
    tokenizer = train_bpe_tokenizer(train, 300, 16)
    assert tokenizer.decode(tokenizer("lazy dog")["input_ids"]) == "lazy dog"
    blocks = tokenize_into_blocks(train, tokenizer, 16)
    ids = [i for e in tokenizer(train, add_special_tokens=False)["input_ids"] for i in e + [tokenizer.eos_token_id]]
    assert blocks.shape[1] == 16 and blocks.flatten().tolist() == ids[: blocks.numel()]


def test_text_batches_visit_every_block_once_per_epoch_for_any_number_of_processes():
    blocks = torch.arange(24).view(12, 2)
    data = TextData(blocks, blocks[:2], seed=0, max_eval_blocks=2, eval_batch_size=2)
    one = torch.cat([data.train_batch(s, 0, 1, 0, 1, 4)["input_ids"] for s in range(3)])
    two = torch.cat(
        [torch.cat([data.train_batch(s, 0, 1, r, 2, 2)["input_ids"] for r in range(2)]) for s in range(3)]
    )
    assert torch.equal(one, two)
    assert sorted(one[:, 0].tolist()) == list(range(0, 24, 2))
