"""Recall tasks: every answer is recoverable from the context, and a batch is a pure function of (seed, step)."""

import pytest
import torch

from mesa_lm.data.recall import BLANK, COPY, IGNORE, SPECIAL_TOKENS, answer_accuracy
from mesa_lm.data.tasks import load_task, make_task, save_task

RECALL_TASKS = ("mqar", "noisy_recall", "selective_copying")


def recall_task(name="mqar", num_pairs=8, **options):
    if name == "selective_copying":
        return make_task(name, num_tokens=num_pairs, **options)
    return make_task(name, num_pairs=num_pairs, **options)


def context_pairs(ids: torch.Tensor, task) -> dict[int, list[int]]:
    """Key -> the values that follow it in the context (before the query region)."""
    pairs: dict[int, list[int]] = {}
    context = ids[: task.context_len].tolist()
    for j in range(len(context) - 1):
        if SPECIAL_TOKENS <= context[j] < task.vocabulary.first_value:
            pairs.setdefault(context[j], []).append(context[j + 1])
    return pairs


@pytest.mark.parametrize("name", ["mqar", "noisy_recall"])
@pytest.mark.parametrize("num_pairs, seq_len", [(1, 4), (8, 64), (24, 112)])
def test_every_query_is_answered_by_its_context(name, num_pairs, seq_len):
    task = recall_task(name=name, vocab_size=96, seq_len=seq_len, num_pairs=num_pairs, seed=3)
    batch = task.global_batch(5, 32)
    ids, labels = batch["input_ids"], batch["labels"]
    assert ids.shape == labels.shape == (32, seq_len)
    for row_ids, row_labels in zip(ids, labels):
        pairs = context_pairs(row_ids, task)
        assert len(pairs) == num_pairs  # N distinct keys in the context
        assert all(len(values) == 1 for values in pairs.values())  # each key once: its value is unambiguous
        answers = (row_labels != IGNORE).nonzero().flatten().tolist()
        assert len(answers) == task.queries
        queried = []
        for p in answers:
            key, answer = row_ids[p - 1].item(), row_labels[p].item()
            assert p - 1 >= task.context_len  # queries come after the context
            assert row_ids[p].item() == answer  # teacher-forced: the answer token follows its key
            assert pairs[key] == [answer]  # the answer is the value paired with this key in the context
            queried.append(key)
        assert len(set(queried)) == len(queried)  # each key asked at most once
        vocab = task.vocabulary
        assert vocab.first_value <= min(pairs.values())[0] and max(max(pairs.values())) < vocab.first_noise
        others = [t for j, t in enumerate(row_ids.tolist()) if j >= task.context_len and j + 1 not in answers
                  and j not in answers]
        if name == "mqar":  # everything else is blank
            assert set(others) <= {BLANK}
            assert (row_ids[: task.context_len] != BLANK).all()
        else:  # noise tokens only from the noise vocabulary, the context's share as asked
            assert all(t >= vocab.first_noise for t in others)
            assert (row_ids[: task.context_len] >= vocab.first_noise).sum() == task.noise_tokens == round(0.25 * 2 * num_pairs)


@pytest.mark.parametrize("num_items, seq_len", [(1, 3), (6, 40)])
def test_selective_copying_answers_are_the_data_tokens_in_order(num_items, seq_len):
    task = recall_task(name="selective_copying", vocab_size=20, seq_len=seq_len, num_pairs=num_items)
    batch = task.global_batch(0, 64)
    for row_ids, row_labels in zip(batch["input_ids"], batch["labels"]):
        marker = (row_ids == COPY).nonzero().flatten().tolist()
        assert marker == [seq_len - num_items - 1]
        region = row_ids[: marker[0]]
        data = region[region != BLANK]
        answers = row_labels[row_labels != IGNORE]
        assert torch.equal(answers, data)
        assert torch.equal(row_ids[marker[0] + 1 :], data)
        assert (row_labels[: marker[0] + 1] == IGNORE).all()


@pytest.mark.parametrize("name", RECALL_TASKS)
def test_a_batch_is_a_pure_function_of_seed_stream_and_step(name, tmp_path):
    task = recall_task(name=name, vocab_size=64, seq_len=48, num_pairs=8, seed=1)
    first = task.global_batch(7, 16)
    again = recall_task(name=name, vocab_size=64, seq_len=48, num_pairs=8, seed=1).global_batch(7, 16)
    for key in ("input_ids", "labels"):
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["input_ids"], task.global_batch(8, 16)["input_ids"])
    assert not torch.equal(first["input_ids"], task.global_batch(7, 16, stream=1)["input_ids"])
    other_seed = recall_task(name=name, vocab_size=64, seq_len=48, num_pairs=8, seed=2)
    assert not torch.equal(first["input_ids"], other_seed.global_batch(7, 16)["input_ids"])
    save_task(tmp_path, task)  # what a trained model's folder holds: the same task, the same data
    assert torch.equal(load_task(tmp_path).global_batch(7, 16)["labels"], first["labels"])


def test_answer_accuracy_scores_the_position_before_each_answer():
    task = recall_task(vocab_size=32, seq_len=16, num_pairs=2)
    assert task.model == "causal_lm"
    batch = task.global_batch(0, 4)
    ids, labels = batch["input_ids"], batch["labels"]
    perfect = torch.nn.functional.one_hot(ids.roll(-1, 1), 32).float()  # position t "predicts" token t + 1
    correct, total = answer_accuracy(perfect, labels)
    assert torch.equal(correct, total) and (total == 2).all()
    wrong = torch.nn.functional.one_hot(ids, 32).float()  # predicts the current token: never the answer
    assert (answer_accuracy(wrong, labels)[0] == 0).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_pairs=0), "num_pairs=0 is invalid: must be a number >= 1"),
        (dict(vocab_size=20, num_pairs=10), "vocab_size=20 is invalid: leaves 9 key tokens"),
        (dict(seq_len=30, num_pairs=8), "seq_len=30 is invalid: must be >= 32"),
        (dict(num_queries=9, num_pairs=8), "num_queries=9 is invalid: must be at most num_pairs=8"),
        (dict(name="selective_copying", seq_len=8, num_pairs=4), "seq_len=8 is invalid: must be >= 2 * num_tokens"),
        (dict(name="noisy_recall", noise_fraction=-1.0), "noise_fraction=-1.0 is invalid"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError) as error:
        recall_task(**kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)
