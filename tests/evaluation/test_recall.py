"""The recall harness's accuracy: exact on an oracle and on a model that is always wrong, intervals around it, and a
grid that skips (with the reason) the settings the task or the model cannot hold."""

from types import SimpleNamespace

import pytest
import torch

from mesa_lm.data.recall import BLANK
from mesa_lm.data.tasks import make_task
from mesa_lm.evaluation.recall import default_seq_lens, default_sizes, evaluate_recall


class NextTokenModel(torch.nn.Module):
    """Logits that put all mass on the next token (`oracle`) or on the blank token (never an answer)."""

    def __init__(self, vocab: int, oracle: bool, positions: int = 128):
        super().__init__()
        self.vocab, self.oracle = vocab, oracle
        self.config = SimpleNamespace(max_position_embeddings=positions)

    def forward(self, input_ids):
        predicted = input_ids.roll(-1, 1) if self.oracle else torch.full_like(input_ids, BLANK)
        return SimpleNamespace(logits=torch.nn.functional.one_hot(predicted, self.vocab).float())


@pytest.mark.parametrize("name", ["mqar", "noisy_recall", "selective_copying"])
def test_an_oracle_scores_one_and_a_wrong_model_zero(name):
    size = "num_tokens" if name == "selective_copying" else "num_pairs"
    task = make_task(name, vocab_size=64, seq_len=32, **{size: 4})
    for oracle, expected in ((True, 1.0), (False, 0.0)):
        result = evaluate_recall(NextTokenModel(64, oracle), task, [2, 4], [32], num_sequences=16, batch_size=8,
                                 num_resamples=50, progress=False)
        assert [(p["size"], p["seq_len"]) for p in result["points"]] == [(2, 32), (4, 32)]
        for p in result["points"]:
            assert p["accuracy"] == p["low"] == p["high"] == expected
            assert p["answers"] == 16 * p["size"] and p["sequences"] == 16


def test_intervals_bracket_the_accuracy_and_shrink_with_more_sequences():
    class Coin(NextTokenModel):  # right on about half of the sequences
        def forward(self, input_ids):
            logits = super().forward(input_ids).logits
            wrong = (input_ids[:, :1] % 2 == 0)[..., None]
            return SimpleNamespace(logits=torch.where(wrong, logits.roll(1, -1), logits))

    task = make_task("mqar", vocab_size=64, seq_len=32, num_pairs=4)
    widths = []
    for n in (32, 512):
        (p,) = evaluate_recall(Coin(64, True), task, [4], [32], num_sequences=n, num_resamples=200,
                               progress=False)["points"]
        assert p["low"] < p["accuracy"] < p["high"] and 0.2 < p["accuracy"] < 0.8
        widths.append(p["high"] - p["low"])
    assert widths[1] < widths[0] / 2


def test_settings_that_do_not_fit_are_skipped_with_the_reason():
    task = make_task("mqar", vocab_size=64, seq_len=32, num_pairs=4)
    result = evaluate_recall(NextTokenModel(64, True, positions=48), task, [4, 16], [32, 64], num_sequences=4,
                             progress=False, num_resamples=10)
    assert [(p["size"], p["seq_len"]) for p in result["points"]] == [(4, 32)]
    reasons = {(s["size"], s["seq_len"]): s["reason"] for s in result["skipped"]}
    assert "seq_len=32 is invalid: must be >= 64" in reasons[(16, 32)]
    assert reasons[(4, 64)] == reasons[(16, 64)] == "longer than the model's 48 positions"
    with pytest.raises(ValueError, match="no \\(size, seq_len\\) setting of the grid fits"):
        evaluate_recall(NextTokenModel(64, True, positions=16), task, [4], [32], num_sequences=4, progress=False)


def test_default_grid():
    assert default_sizes(8) == [2, 4, 8, 16] and default_sizes(1) == [1, 2]
    assert default_seq_lens(64, 1024) == [64, 128] and default_seq_lens(64, 100) == [64]
