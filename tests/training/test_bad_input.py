"""Bad input to train_lm.py ends in one line `train_lm.py: error: ...` naming the option, exit status 2, and loses
no byte of an earlier run in the output folder, even with --overwrite_output_dir: everything is checked first.

The table runs `main(argv)` in-process (fast); `test_subprocess_entry_point` checks a few cases as users run them.
"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mesa_lm.training.cli import main

from .runs import REPO, TRAIN_LM, env

TINY_TEXT_MODEL = json.dumps({"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32,
                              "max_position_embeddings": 64})
TEXT = "A stitch in time saves nine. Look before you leap. Many hands make light work. " * 60
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "train.txt").write_text(TEXT)
    (folder / "one-line.txt").write_text("just one short line\n")
    (folder / "empty.txt").write_text("")
    (folder / "blank.txt").write_text("  \n\n")
    (folder / "binary.bin").write_bytes(ELF)
    (folder / "a-folder").mkdir()
    (folder / "a-file").write_text("x")
    configs = {
        "steps-true.yaml": "max_steps: true\n",
        "steps-float.yaml": "max_steps: 1.5\n",
        "steps-string.yaml": "max_steps: '3'\n",
        "overwrite-no.yaml": "overwrite_output_dir: 'no'\n",
        "overwrite-false.yaml": "overwrite_output_dir: 'false'\n",
        "overwrite-one.yaml": "overwrite_output_dir: 1\n",
        "lr-string.yaml": "learning_rate: fast\n",
        "lr-nan.yaml": "learning_rate: .nan\n",
        "wd-inf.yaml": "weight_decay: .inf\n",
        "beta1.yaml": "adam_beta1: 1.5\n",
        "seed.yaml": "seed: -1\n",
        "syntax.yaml": "max_steps: [1, 2\n",
        "tabs.yaml": "max_steps:\t3\n  - x\n",
        "list.yaml": "- max_steps\n- 3\n",
        "scalar.yaml": "42\n",
        "unknown.yaml": "max_steps: 3\nlearning_rat: 0.1\n",
        "task.yaml": "task: images\n",
        "preset.yaml": "preset: gpt-5\n",
        "preset-number.yaml": "preset: 5\n",
        "task-list.yaml": "task: [text]\n",
        "overrides-typo.yaml": "config_overrides: '{\"hiden_size\": 8}'\n",
        "syntax.json": '{"max_steps": 3,,}',
        "list.json": "[1, 2]",
        "binary.yaml": None,
    }
    for name, text in configs.items():
        if text is None:
            (folder / name).write_bytes(ELF)
        else:
            (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def run_dir(files, tmp_path_factory):
    """A finished earlier run: checkpoints, tokenizer, train_args.json, model (2 steps of a tiny text model)."""
    out = tmp_path_factory.mktemp("earlier") / "run"
    code = main(base(files, out)[:-1] + ["--save_steps", "1"])
    assert code == 0
    assert (out / "checkpoints" / "step-2" / "manifest.json").is_file() and (out / "tokenizer.json").is_file()
    changed = files / "changed-model"  # a finished model whose config was edited after it was saved
    shutil.copytree(out, changed, ignore=shutil.ignore_patterns("checkpoints"))
    config = json.loads((changed / "config.json").read_text())
    (changed / "config.json").write_text(json.dumps({**config, "mixer_types": ["mesa", "mesa"]}))
    return out


def base(files: Path, out: Path) -> list[str]:
    """A valid command that would overwrite `out` if nothing else were wrong."""
    return ["--train_file", str(files / "train.txt"), "--vocab_size", "300", "--block_size", "32",
            "--config_overrides", TINY_TEXT_MODEL, "--per_device_train_batch_size", "4", "--max_eval_blocks", "4",
            "--report_to", "none", "--max_steps", "2", "--eval_steps", "0", "--save_steps", "0", "--output_dir",
            str(out), "--overwrite_output_dir"]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def exit_code(entry, argv) -> int:
    try:
        return entry(argv)
    except SystemExit as stop:
        return stop.code


# (case id, extra command-line arguments, text the error line must contain). Later options win, so each case's
# arguments override the valid base command. {files} and {run} are filled in.
INT_OPTIONS = ["per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
               "max_steps", "block_size", "save_total_limit", "logging_steps", "eval_batches", "max_eval_blocks",
               "state_dim", "hidden_dim", "num_pairs"]
CASES = [
    *[(f"{o}={v}", [f"--{o}", v], f"{o}") for o in INT_OPTIONS for v in ("0", "-1")],
    *[(f"{o}=1.5", [f"--{o}", "1.5"], f"--{o}") for o in INT_OPTIONS],
    *[(f"{o}=-1", [f"--{o}", "-1"], f"{o}=-1") for o in ("warmup_steps", "eval_steps", "save_steps", "seed")],
    *[(f"{o}=x", [f"--{o}", "x"], f"--{o}") for o in ("warmup_steps", "eval_steps", "save_steps", "seed")],
    ("seed=2**32", ["--seed", str(2**32)], "seed=4294967296"),
    ("seq_len=0", ["--task", "dynamics", "--seq_len", "0"], "seq_len=0"),
    ("seq_len=1", ["--task", "dynamics", "--seq_len", "1"], "seq_len=1"),
    ("seq_len=-3", ["--task", "dynamics", "--seq_len", "-3"], "seq_len=-3"),
    ("num_pairs too many", ["--task", "fewshot_regression", "--num_pairs", "40"], "num_pairs=40"),
    ("seq_len too long", ["--task", "dynamics", "--seq_len", "100"], "seq_len=100 exceeds"),
    ("vocab_size=10", ["--vocab_size", "10"], "vocab_size=10"),
    ("vocab_size=0", ["--vocab_size", "0"], "vocab_size=0"),
    ("block_size too long", ["--block_size", "600"], "block_size=600 exceeds"),
    *[(f"learning_rate={v}", ["--learning_rate", v], "learning_rate") for v in ("0", "-1", "nan", "inf", "fast")],
    *[(f"min_learning_rate={v}", ["--min_learning_rate", v], "min_learning_rate") for v in ("-1", "nan", "inf")],
    *[(f"weight_decay={v}", ["--weight_decay", v], "weight_decay") for v in ("-0.1", "nan", "inf")],
    *[(f"adam_beta1={v}", ["--adam_beta1", v], "adam_beta1") for v in ("1.5", "1", "-0.1", "nan")],
    *[(f"adam_beta2={v}", ["--adam_beta2", v], "adam_beta2") for v in ("1.0", "2", "nan")],
    *[(f"adam_epsilon={v}", ["--adam_epsilon", v], "adam_epsilon") for v in ("0", "-1", "nan")],
    *[(f"max_grad_norm={v}", ["--max_grad_norm", v], "max_grad_norm") for v in ("-1", "nan", "inf")],
    *[(f"noise_std={v}", ["--task", "dynamics", "--noise_std", v], "noise_std") for v in ("-1", "nan", "inf")],
    *[(f"{o}=bogus", [f"--{o}", "bogus"], o) for o in ("task", "dynamics", "tokens", "input_distribution",
                                                       "lr_scheduler_type", "mixed_precision", "report_to",
                                                       "nonfinite")],
    ("preset unknown", ["--preset", "gpt-5"], "unknown preset 'gpt-5'"),
    ("model_preset unknown", ["--model_preset", "gpt-5"], "gpt-5"),
    ("bool with value", ["--overwrite_output_dir=no"], "--overwrite_output_dir"),
    ("unknown option", ["--learning_rat", "1e-3"], "unrecognized arguments: --learning_rat"),
    ("abbreviated option", ["--learning", "1e-3"], "--learning"),
    ("missing value", ["--max_steps"], "--max_steps"),
    ("constructed tokens, regression", ["--task", "fewshot_regression", "--tokens", "constructed"], "constructed"),
    # config overrides
    ("overrides not JSON", ["--config_overrides", "{hidden"], "config_overrides is not valid JSON"),
    ("overrides a list", ["--config_overrides", "[1]"], "config_overrides must be a JSON object"),
    ("overrides typo", ["--config_overrides", '{"hiden_size": 8}'], "hiden_size"),
    ("overrides hidden 0", ["--config_overrides", '{"hidden_size": 0}'], "hidden_size"),
    ("overrides mixer", ["--config_overrides", '{"mixer_types": ["soft"]}'], "mixer_types"),
    ("overrides heads", ["--config_overrides", '{"num_attention_heads": -2}'], "num_attention_heads"),
    ("overrides rope_theta 0", ["--config_overrides", '{"rope_theta": 0}'], "rope_theta=0"),
    ("overrides rope_theta -1", ["--config_overrides", '{"rope_theta": -1.0}'], "rope_theta=-1.0"),
    ("overrides NaN", ["--config_overrides", '{"norm_eps": NaN}'], "norm_eps=nan"),
    ("overrides with model path", ["--model_name_or_path", "{run}"], "config_overrides cannot be combined"),
    # paths
    ("model_name_or_path missing", ["--config_overrides", "{}", "--model_name_or_path", "{files}/nope"],
     "model_name_or_path"),
    ("model_name_or_path corrupt", ["--config_overrides", "{}", "--model_name_or_path", "{files}/changed-model"],
     "is corrupt: config.json"),
    ("tokenizer_name missing", ["--tokenizer_name", "{files}/nope"], "tokenizer_name"),
    ("tokenizer_name a file", ["--tokenizer_name", "{files}/a-file"], "tokenizer_name"),
    ("train_file missing", ["--train_file", "{files}/nope.txt"], "train_file"),
    ("train_file empty", ["--train_file", "{files}/empty.txt"], "train_file"),
    ("train_file blank", ["--train_file", "{files}/blank.txt"], "is empty"),
    ("train_file one line", ["--train_file", "{files}/one-line.txt"], "block_size=32"),
    ("train_file binary", ["--train_file", "{files}/binary.bin"], "train_file"),
    ("train_file a folder", ["--train_file", "{files}/a-folder"], "train_file"),
    ("validation_file missing", ["--validation_file", "{files}/nope.txt"], "validation_file"),
    ("validation_file binary", ["--validation_file", "{files}/binary.bin"], "validation_file"),
    ("validation_file one line", ["--validation_file", "{files}/one-line.txt"], "validation text"),
    ("validation_file alone", ["--train_file", "", "--validation_file", "{files}/train.txt"], "validation_file"),
    ("output_dir a file", ["--output_dir", "{files}/a-file"], "output_dir"),
    ("output_dir under a file", ["--output_dir", "{files}/a-file/run"], "output_dir"),
    ("output_dir empty", ["--output_dir", ""], "output_dir"),
    ("resume not a checkpoint", ["--resume_from_checkpoint", "{files}/a-folder"], "not a checkpoint folder"),
    ("resume missing", ["--resume_from_checkpoint", "{files}/nope"], "resume_from_checkpoint"),
    ("resume other shape", ["--resume_from_checkpoint", "latest", "--config_overrides",
                            TINY_TEXT_MODEL.replace('"hidden_size": 16', '"hidden_size": 24')], "another shape"),
    # config files
    ("config missing", ["--config", "{files}/nope.yaml"], "config file"),
    ("config a folder", ["--config", "{files}/a-folder"], "config file"),
    ("config binary", ["--config", "{files}/binary.yaml"], "config file"),
    *[(f"config {name}", ["--config", "{files}/" + name], word) for name, word in (
        ("steps-true.yaml", "max_steps=True"),
        ("steps-float.yaml", "max_steps=1.5"),
        ("steps-string.yaml", "max_steps='3'"),
        ("overwrite-no.yaml", "overwrite_output_dir='no'"),
        ("overwrite-false.yaml", "overwrite_output_dir='false'"),
        ("overwrite-one.yaml", "overwrite_output_dir=1"),
        ("lr-string.yaml", "learning_rate='fast'"),
        ("lr-nan.yaml", "learning_rate=nan"),
        ("wd-inf.yaml", "weight_decay=inf"),
        ("beta1.yaml", "adam_beta1=1.5"),
        ("seed.yaml", "seed=-1"),
        ("syntax.yaml", "cannot be parsed"),
        ("tabs.yaml", "cannot be parsed"),
        ("list.yaml", "must hold a mapping"),
        ("scalar.yaml", "must hold a mapping"),
        ("unknown.yaml", "unknown options: learning_rat"),
        ("task.yaml", "task='images'"),
        ("preset.yaml", "unknown preset 'gpt-5'"),
        ("preset-number.yaml", "preset=5"),
        ("task-list.yaml", "task=['text']"),
        ("overrides-typo.yaml", "hiden_size"),
        ("syntax.json", "cannot be parsed"),
        ("list.json", "must hold a mapping"),
    )],
]


def test_the_table_is_large():
    assert len(CASES) >= 120


@pytest.mark.parametrize("case_id, extra, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_the_earlier_run_is_untouched(case_id, extra, expected, files, run_dir,
                                                                        capsys):
    before = snapshot(run_dir)
    argv = base(files, run_dir) + [a.replace("{files}", str(files)).replace("{run}", str(run_dir)) for a in extra]
    capsys.readouterr()
    code = exit_code(main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(err) == 1 and err[0].startswith("train_lm.py: error: "), err
    assert not err[0].startswith('train_lm.py: error: "'), err  # the message itself, not its repr
    assert expected in err[0], err[0]
    assert snapshot(run_dir) == before


def test_non_empty_output_dir_is_not_overwritten(tmp_path, capsys, files):
    out = tmp_path / "earlier-run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"precious")
    argv = [a for a in base(files, out) if a != "--overwrite_output_dir"]
    assert main(argv) == 2
    assert "is not empty; pass --overwrite_output_dir" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == b"precious" and len(list(out.iterdir())) == 1


def test_a_failed_start_leaves_nothing_behind(tmp_path, capsys):
    """Errors found late (the sequence length against the model) used to leave train_args.json behind."""
    out = tmp_path / "new"
    assert main(["--preset", "hybrid-mesa", "--seq_len", "5000", "--output_dir", str(out)]) == 2
    assert "exceeds" in capsys.readouterr().err
    assert not out.exists()


def test_preset_then_config_file_then_command_line(tmp_path):
    from mesa_lm.training.arguments import parse_args

    (tmp_path / "run.yaml").write_text("max_steps: 3\nlearning_rate: 0.01\nwarmup_steps: 7\n")
    args = parse_args(["--config", str(tmp_path / "run.yaml"), "--learning_rate", "0.02"])
    assert (args.max_steps, args.learning_rate, args.warmup_steps) == (3, 0.02, 7)
    assert args.min_learning_rate == 2e-4  # from the default preset
    (tmp_path / "run.json").write_text(json.dumps({"preset": "linear-1", "max_steps": 4}))
    args = parse_args(["--config", str(tmp_path / "run.json")])
    assert (args.preset, args.task, args.max_steps) == ("linear-1", "dynamics", 4)
    assert parse_args(["--config", str(tmp_path / "run.json"), "--preset", "none"]).task == "text"


def test_subprocess_entry_point(tmp_path, run_dir, files):
    """As users run it: one line on stderr, status 2, no traceback, nothing changed."""
    before = snapshot(run_dir)
    for extra, word in ((["--adam_beta1", "1.5"], "adam_beta1=1.5"),
                        (["--train_file", str(files / "one-line.txt")], "block_size=32")):
        result = subprocess.run([sys.executable, TRAIN_LM, *base(files, run_dir), *extra], capture_output=True,
                                text=True, env=env(), cwd=REPO, timeout=120)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and word in lines[0], result.stderr[-2000:]
    assert snapshot(run_dir) == before
