"""Bad input ends with a one-line error and a non-zero exit code, and loses no file of an earlier run."""

import pytest

from mesa_lm.training.cli import main

from .runs import TINY


def fails_with(argv, capsys, message) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert message in err, err
    return err


def test_missing_train_file(tmp_path, capsys):
    fails_with(["--output_dir", str(tmp_path / "o"), "--train_file", str(tmp_path / "nope.txt")], capsys,
               "train_file '" + str(tmp_path / "nope.txt") + "' does not exist")


def test_empty_train_file(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("  \n")
    fails_with(["--output_dir", str(tmp_path / "o"), "--train_file", str(tmp_path / "empty.txt")], capsys, "is empty")


def test_block_size_larger_than_the_model_allows(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("hello world, this is a tiny corpus. " * 400)
    fails_with(
        ["--output_dir", str(tmp_path / "o"), "--train_file", str(tmp_path / "t.txt"), "--vocab_size", "300",
         "--block_size", "600"],
        capsys,
        "block_size=600 exceeds the model's max_position_embeddings=512",
    )


def test_unknown_preset(tmp_path, capsys):
    fails_with(["--preset", "gpt-5", "--output_dir", str(tmp_path / "o")], capsys, "unknown preset 'gpt-5'")


def test_unknown_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--learning_rat", "1e-3"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "unrecognized arguments: --learning_rat" in err


def test_unknown_option_in_config_file(tmp_path, capsys):
    (tmp_path / "run.yaml").write_text("max_steps: 3\nlearning_rat: 0.1\n")
    fails_with(["--config", str(tmp_path / "run.yaml")], capsys, "unknown options: learning_rat")


def test_resume_path_without_checkpoint(tmp_path, capsys):
    (tmp_path / "not-a-checkpoint").mkdir()
    fails_with(["--output_dir", str(tmp_path / "o"), "--resume_from_checkpoint", str(tmp_path / "not-a-checkpoint")],
               capsys, "is not a checkpoint folder")
    fails_with(["--output_dir", str(tmp_path / "o"), "--resume_from_checkpoint", "latest"], capsys, "holds no checkpoint")


def test_non_empty_output_dir_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "earlier-run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"precious")
    (out / "metrics.jsonl").write_text("{}\n")
    fails_with([*TINY, "--output_dir", str(out), "--max_steps", "2"], capsys, "is not empty; pass --overwrite_output_dir")
    assert (out / "model.safetensors").read_bytes() == b"precious"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl", "model.safetensors"]


def test_bad_values(tmp_path, capsys):
    fails_with(["--output_dir", str(tmp_path / "o"), "--task", "images"], capsys, "task='images' is invalid")
    fails_with(["--output_dir", str(tmp_path / "o"), "--config_overrides", "{hidden"], capsys, "config_overrides is not valid JSON")
    fails_with([*TINY, "--output_dir", str(tmp_path / "o"), "--config_overrides", '{"mixer_types": ["soft"]}'],
               capsys, "MesaConfig.")
