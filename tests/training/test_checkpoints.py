"""Checkpoints you can trust: no pickle is ever loaded, corrupt checkpoints are skipped with a one-line warning,
non-finite training stops without saving a NaN model, and a full disk is reported as such."""

import errno
import os
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file

from mesa_lm.training import checkpoints, trainer
from mesa_lm.training.checkpoints import MANIFEST, resolve_resume_path, verify_checkpoint, write_manifest
from mesa_lm.training.cli import main
from mesa_lm.training.data import SyntheticData

from .runs import TINY

ARGS = [*TINY, "--per_device_train_batch_size", "8", "--eval_steps", "0", "--save_total_limit", "3"]


def train(out, *extra) -> int:
    return main([*ARGS, "--output_dir", str(out), *extra])


def one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    err = [line for line in lines if line.strip() and not line.startswith("train:")]
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A run stopped after step 4 with checkpoints step-2 and step-4 (as if killed before finishing)."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    assert train(out, "--max_steps", "4", "--save_steps", "2") == 0
    for name in os.listdir(out):  # keep only what a run killed after step 4 leaves
        if name not in ("checkpoints", "train_args.json", "metrics.jsonl"):
            (out / name).unlink()
    return out


class Payload:
    """Unpickling this runs code: it creates the file `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def copy_run(source, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(source, target)
    return target


# The forged optimizer.pt is a protocol-4 pickle: torch warns about the protocol before refusing it, as intended.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_planted_pickle_is_refused_without_running(two_checkpoints, tmp_path, capsys):
    run = copy_run(two_checkpoints, tmp_path)
    marker = tmp_path / "pwned"
    (run / "checkpoints" / "step-4" / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Payload(marker)))
    assert train(run, "--max_steps", "6", "--save_steps", "2", "--resume_from_checkpoint", "latest") == 0
    assert not marker.exists()
    err = capsys.readouterr()
    assert "skipping corrupt checkpoint" in err.err and "custom_checkpoint_0.pkl" in err.err
    assert "at step 2" in err.out  # fell back to the intact step-2

    # the optimizer state replaced by a pickle with code, and the manifest forged to match: weights_only refuses
    run = copy_run(two_checkpoints, tmp_path / "forged")
    step4 = run / "checkpoints" / "step-4"
    (step4 / "optimizer.pt").write_bytes(pickle.dumps(Payload(marker)))
    (step4 / MANIFEST).unlink()
    write_manifest(step4)
    assert train(run, "--max_steps", "6", "--resume_from_checkpoint", str(step4)) == 2
    line = one_line(capsys)
    assert "cannot be loaded" in line and "step-4" in line
    assert not marker.exists()


def corrupt(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "emptied":
        path.write_bytes(b"")
    elif how == "flipped":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    else:
        path.unlink()


FILES = ["model.safetensors", "optimizer.pt", "rng_state_0.safetensors", "rng_state_0.json", "trainer_state.json",
         MANIFEST]


@pytest.mark.parametrize("how", ["truncated", "emptied", "flipped", "deleted"])
@pytest.mark.parametrize("name", FILES)
def test_every_corruption_of_the_latest_checkpoint_falls_back_naming_the_file(two_checkpoints, tmp_path, name, how):
    run = copy_run(two_checkpoints, tmp_path)
    corrupt(run / "checkpoints" / "step-4" / name, how)
    warnings = []
    assert resolve_resume_path("latest", run / "checkpoints", warn=warnings.append) == run / "checkpoints" / "step-2"
    assert len(warnings) == 1 and "step-4" in warnings[0] and name in warnings[0], warnings
    # named explicitly, the corrupt checkpoint is an error naming the file
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        resolve_resume_path(str(run / "checkpoints" / "step-4"), run / "checkpoints")


def test_resume_falls_back_end_to_end_and_says_so_in_one_line(two_checkpoints, tmp_path, capsys):
    run = copy_run(two_checkpoints, tmp_path)
    corrupt(run / "checkpoints" / "step-4" / "model.safetensors", "flipped")
    assert train(run, "--max_steps", "5", "--save_steps", "0", "--resume_from_checkpoint", "latest") == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "model.safetensors does not match its checksum" in warnings[0]
    assert "resumed from" in captured.out and "at step 2" in captured.out
    assert verify_checkpoint(run / "checkpoints" / "step-5") is None

    for step in ("step-2", "step-4", "step-5"):  # nothing intact left: one line, exit 2
        corrupt(run / "checkpoints" / step / "trainer_state.json", "emptied")
    assert train(run, "--max_steps", "6", "--resume_from_checkpoint", "latest") == 2
    assert "no intact checkpoint" in one_line(capsys)


def nan_from(step_index, only=False):
    original = SyntheticData.train_batch

    def batch(self, step, *args):
        rows = original(self, step, *args)
        if step == step_index if only else step >= step_index:
            rows = {**rows, "inputs": torch.full_like(rows["inputs"], float("nan"))}
        return rows

    return batch


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(SyntheticData, "train_batch", nan_from(4))  # steps 5, 6, ... see NaN inputs
    out = tmp_path / "nan"
    assert train(out, "--max_steps", "8", "--save_steps", "2") == 1
    line = one_line(capsys)
    assert "non-finite loss at step 5" in line and "step-4" in line
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-4"]
    assert verify_checkpoint(out / "checkpoints" / "step-4") is None
    assert not (out / "model.safetensors").exists() and not (out / "config.json").exists()


def test_skipping_non_finite_steps_finishes_with_a_finite_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(SyntheticData, "train_batch", nan_from(2, only=True))
    out = tmp_path / "skip"
    assert train(out, "--max_steps", "5", "--save_steps", "0", "--nonfinite", "skip") == 0
    assert "1 step(s) with non-finite values skipped" in capsys.readouterr().out
    weights = load_file(str(out / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_non_finite_weights_are_never_saved(tmp_path, monkeypatch, capsys):
    """A step that leaves NaN weights (finite loss and gradients) is caught at the next save."""
    original = torch.optim.AdamW.step

    def poisoned(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if self.state and next(iter(self.state.values()))["step"] >= 3:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned)
    out = tmp_path / "weights"
    assert train(out, "--max_steps", "4", "--save_steps", "2", "--nonfinite", "skip") == 1
    assert "non-finite weights at step 4" in one_line(capsys)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2"]
    assert not (out / "model.safetensors").exists()


def test_a_full_disk_is_reported_and_the_earlier_checkpoint_kept(tmp_path, monkeypatch, capsys):
    original = checkpoints.write_bytes

    def full_at_step_4(path, data):
        if ".tmp-step-4" in str(path) and path.name == "optimizer.pt":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return original(path, data)

    monkeypatch.setattr(checkpoints, "write_bytes", full_at_step_4)
    out = tmp_path / "full"
    assert train(out, "--max_steps", "6", "--save_steps", "2") == 1
    line = one_line(capsys)
    assert line.startswith("train_lm.py: error: disk full: no space left on device") and "step-2" in line
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2"]  # no half-written folder
    assert verify_checkpoint(out / "checkpoints" / "step-2") is None


def test_the_final_save_is_atomic_and_a_full_disk_leaves_the_old_model(tmp_path, monkeypatch, capsys):
    out = tmp_path / "final"
    assert train(out, "--max_steps", "2", "--save_steps", "0") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.suffix != ".jsonl"}
    assert checkpoints.verify_folder(out, exhaustive=False) is None

    def no_space(self, folder, *args, **kwargs):
        (folder / "config.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trainer.MesaForCausalRegression, "save_pretrained", no_space)
    capsys.readouterr()
    assert train(out, "--max_steps", "4", "--save_steps", "0", "--resume_from_checkpoint", "latest") == 1
    assert "disk full" in one_line(capsys)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.suffix != ".jsonl"}
    before.pop("train_args.json"), after.pop("train_args.json")
    assert after == before and not (out / ".tmp-final").exists()
