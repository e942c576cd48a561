"""An interrupted training inside the reproduce command stops the command and resumes on the next run."""

import signal

import pytest

from mesa_lm.reproduce.runs import TrainingInterrupted, train_model
from mesa_lm.training import trainer


def test_interrupted_training_raises_then_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    enter = trainer.StopFlag.__enter__

    def signalled_at_once(self):
        flag = enter(self)
        flag.signal = signal.SIGINT  # as if Ctrl-C arrived during the first step
        return flag

    options = dict(max_steps=6, eval_steps=0, save_steps=0, per_device_train_batch_size=8, seed=0)
    monkeypatch.setattr(trainer.StopFlag, "__enter__", signalled_at_once)
    with pytest.raises(TrainingInterrupted, match="stopped at step 1"):
        train_model(tmp_path, "linear-1", preset="linear-1", **options)
    assert not (tmp_path / "models" / "linear-1" / "train_results.json").exists()

    monkeypatch.setattr(trainer.StopFlag, "__enter__", enter)
    _, results = train_model(tmp_path, "linear-1", preset="linear-1", **options)
    assert results["steps"] == 6 and results["steps_this_run"] == 5  # resumed at step 1, not restarted
    _, again = train_model(tmp_path, "linear-1", preset="linear-1", **options)
    assert again == results  # a finished run is reused


def test_a_finished_run_with_other_arguments_is_retrained(tmp_path):
    options = dict(max_steps=3, eval_steps=0, save_steps=0, per_device_train_batch_size=8, seed=0)
    _, first = train_model(tmp_path, "linear-1", preset="linear-1", **options)
    _, again = train_model(tmp_path, "linear-1", preset="linear-1", **options)
    assert again == first
    _, longer = train_model(tmp_path, "linear-1", preset="linear-1", **{**options, "max_steps": 5})
    assert longer["steps"] == 5 and longer["steps_this_run"] == 5  # not reused, not resumed from the 3-step run
