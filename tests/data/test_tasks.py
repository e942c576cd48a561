"""The task registry: every task round-trips through task.json, and a task defined in one file is usable at once."""

from dataclasses import dataclass

import pytest
import torch

from mesa_lm.data.synthetic import SyntheticTask
from mesa_lm.data.tasks import (TASK_FILE, load_task, make_task, register_task, registered_tasks, save_task,
                                task_from_dict)
from mesa_lm.data.tasks.base import at_least, option


@pytest.mark.parametrize("name", ["dynamics", "fewshot_regression", "scalar_regression", "text"])
def test_every_task_round_trips_through_task_json(tmp_path, name):
    cls = registered_tasks()[name]
    changed = {"dynamics": {"dynamics": "partially_observed", "state_dim": 5, "tokens": "constructed"},
               "fewshot_regression": {"num_pairs": 7, "input_distribution": "normal"},
               "scalar_regression": {"num_pairs": 3, "noise_std": 0.0},
               "text": {"vocab_size": 300, "train_file": "a.txt"}}[name]
    task = make_task(name, **changed)
    save_task(tmp_path, task)
    loaded = load_task(tmp_path)
    assert type(loaded) is cls and loaded.to_dict() == task.to_dict()
    assert {k: loaded.options()[k] for k in changed} == changed
    if isinstance(task, SyntheticTask):  # same options and seed: the same data
        torch.testing.assert_close(loaded.global_batch(3, 2)["inputs"], task.global_batch(3, 2)["inputs"])


def test_missing_and_bad_task_json(tmp_path):
    assert load_task(tmp_path) is None
    (tmp_path / TASK_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="task.json cannot be read as JSON"):
        load_task(tmp_path)
    with pytest.raises(ValueError, match="seq_len=0 is invalid"):
        task_from_dict({"task": "dynamics", "options": {"seq_len": 0}})
    with pytest.raises(ValueError, match="has no task name"):
        task_from_dict({"options": {}})


@pytest.fixture
def registry_restored():
    from mesa_lm.data import tasks

    before = dict(tasks._REGISTRY)
    yield
    tasks._REGISTRY.clear()
    tasks._REGISTRY.update(before)


def test_a_task_in_one_file_is_registered(registry_restored):
    @register_task
    @dataclass
    class CountingTask(SyntheticTask):
        name = "counting_test_task"
        length_: int = option(6, "positions", check=at_least(2))

        input_dim = output_dim = 1

        @property
        def length(self):
            return self.length_

        @property
        def length_option(self):
            return f"length_={self.length_}"

        def sample(self, batch, generator):
            x = torch.arange(self.length_, dtype=torch.float).expand(batch, -1)[..., None]
            return {"inputs": x, "targets": x + 1}

    assert "counting_test_task" in registered_tasks()
    task = make_task("counting_test_task", length_=4, seed=1)
    assert task.global_batch(0, 2)["targets"][0, :, 0].tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="length_=1 is invalid: must be a number >= 2"):
        make_task("counting_test_task", length_=1)


def test_training_options_come_from_the_tasks():
    from mesa_lm.training.arguments import TrainArguments

    args = TrainArguments(task="dynamics", seq_len=8)
    assert args.make_task().to_dict()["options"]["seq_len"] == 8 and args.num_pairs is None
    assert TrainArguments(task="dynamics", num_pairs=3).num_pairs is None  # another task's option does not apply
    # ... and is checked on its own, not against its task's other defaults (num_queries <= num_pairs=8 of mqar)
    assert TrainArguments(task="dynamics", num_queries=20).num_queries is None
    with pytest.raises(ValueError, match="num_queries=0 is invalid"):
        TrainArguments(task="dynamics", num_queries=0)
    with pytest.raises(ValueError, match="seq_len=1 is invalid"):
        TrainArguments(task="dynamics", seq_len=1)
