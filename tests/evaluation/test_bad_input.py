"""Bad input ends with one line `prog: error: ...` naming the problem, and exit status 2."""

import pytest

from mesa_lm.evaluation.cli import compare_main, dynamics_main, icl_regression_main, perplexity_main
from mesa_lm.hub.cli import hub_card_main


def one_line_error(capsys, status, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and ": error: " in err[0], err
    for word in words:
        assert word in err[0], err[0]


def test_wrong_model_class_for_each_harness(capsys, lm_dir, regression_dir, tmp_path):
    one_line_error(capsys, perplexity_main([str(regression_dir)]), "MesaForCausalRegression", "perplexity")
    one_line_error(capsys, icl_regression_main([str(lm_dir)]), "MesaForCausalLM", "icl_regression")
    one_line_error(capsys, dynamics_main([str(lm_dir)]), "MesaForCausalLM", "dynamics")
    one_line_error(capsys, perplexity_main([str(tmp_path)]), "no config.json")


def test_prompt_or_window_longer_than_the_model_allows(capsys, lm_dir, regression_dir, text_file):
    one_line_error(capsys, icl_regression_main([str(regression_dir), "--pairs", "40", "--formats", "eos"]),
                   "120 tokens", "maximum of 64")
    one_line_error(capsys, dynamics_main([str(regression_dir), "--seq_len", "100"]), "maximum of 64")
    one_line_error(capsys, perplexity_main([str(lm_dir), "--text_file", str(text_file), "--window", "128"]),
                   "window of 128", "maximum of 64")


def test_empty_text_split(capsys, lm_dir, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    one_line_error(capsys, perplexity_main([str(lm_dir), "--text_file", str(empty)]), "empty")
    one_line_error(capsys, perplexity_main([str(lm_dir), "--text_file", str(tmp_path / "missing.txt")]), "does not exist")


def test_other_bad_options(capsys, lm_dir, regression_dir, text_file, tmp_path):
    one_line_error(capsys, perplexity_main([str(lm_dir), "--text_file", str(text_file), "--window", "32", "--stride", "40"]),
                   "stride=40")
    one_line_error(capsys, hub_card_main([str(tmp_path)]), "no config.json")
    one_line_error(capsys, hub_card_main([str(regression_dir), "--results", str(tmp_path / "none.json")]), "does not exist")
    one_line_error(capsys, compare_main([f"a={lm_dir}", f"a={regression_dir}", "--output_dir", str(tmp_path / "c")]),
                   "share a name")
    with pytest.raises(SystemExit):  # argparse's own one-line error for an unknown choice
        icl_regression_main([str(regression_dir), "--formats", "nope"])


# --- the table: every entry point, one line, exit 2, and the model folders unchanged ------------------------------

import hashlib  # noqa: E402
import json  # noqa: E402

from mesa_lm.reproduce.__main__ import main as reproduce_main  # noqa: E402

HARNESS_INT_OPTIONS = {
    perplexity_main: ("lm", ["window", "stride", "batch_size", "max_tokens"]),
    icl_regression_main: ("regression", ["pairs", "num_prompts", "num_tune_prompts", "batch_size", "tune_batch",
                                         "prefix_len", "knn", "num_resamples"]),
    dynamics_main: ("regression", ["seq_len", "num_sequences", "num_train", "hidden_dim", "prop2_iterations",
                                   "batch_size", "num_resamples"]),
}
CASES = [
    *[(f"{main.__name__} --{o} {v}", main, [model, f"--{o}", v], f"--{o}")
      for main, (model, options) in HARNESS_INT_OPTIONS.items() for o in options for v in ("0", "-1", "x")],
    *[(f"icl --{o} {v}", icl_regression_main, ["regression", f"--{o}", v], f"--{o}")
      for o, values in (("noise_std", ("nan", "-1", "inf")), ("tune_lr", ("0", "nan", "-1")),
                        ("tune_steps", ("-1",)), ("seed", ("-1",))) for v in values],
    *[(f"dynamics --{o} {v}", dynamics_main, ["regression", f"--{o}", v], f"--{o}")
      for o, values in (("noise_std", ("nan", "-1")), ("prop2_steps", ("0",)), ("seed", ("-1",))) for v in values],
    ("perplexity --icl_positions -1 5", perplexity_main, ["lm", "--icl_positions", "-1", "5"], "--icl_positions"),
    ("perplexity missing checkpoint", perplexity_main, ["{tmp}/nope"], "nope"),
    ("icl --formats nope", icl_regression_main, ["regression", "--formats", "nope"], "--formats"),
    ("icl --task nope", icl_regression_main, ["regression", "--task", "nope"], "--task"),
    ("dynamics --dynamics nope", dynamics_main, ["regression", "--dynamics", "nope"], "--dynamics"),
    *[(f"{main.__name__} --output under a file", main, [model, "--output", "{tmp}/a-file/out.json"], "--output")
      for main, model in ((perplexity_main, "lm"), (icl_regression_main, "regression"), (dynamics_main, "regression"))],
    ("dynamics --output a folder", dynamics_main, ["regression", "--output", "{tmp}"], "--output"),
    ("compare --output_dir under a file", compare_main, ["lm", "--output_dir", "{tmp}/a-file/cmp"], "--output_dir"),
    ("compare --harnesses nope", compare_main, ["lm", "--output_dir", "{tmp}/cmp", "--harnesses", "nope"],
     "--harnesses"),
    ("compare --icl.knn -1", compare_main, ["regression", "--output_dir", "{tmp}/cmp", "--icl.knn", "-1"], "--icl.knn"),
    ("compare no --output_dir", compare_main, ["lm"], "--output_dir"),
    ("hub_card missing folder", hub_card_main, ["{tmp}/nope"], "nope"),
    ("hub_card malformed result", hub_card_main, ["regression", "--results", "{tmp}/malformed.json"], "--results"),
    ("hub_card result not JSON", hub_card_main, ["regression", "--results", "{tmp}/a-file"], "not JSON"),
    ("hub_card comparison of missing files", hub_card_main, ["regression", "--results", "{tmp}/comparison.json"],
     "--results"),
    ("hub_card --output under a file", hub_card_main, ["regression", "--output", "{tmp}/a-file/README.md"],
     "--output"),
    ("hub_card --push without --repo_id", hub_card_main, ["regression", "--push"], "--push needs --repo_id"),
    ("reproduce --out a file", reproduce_main, ["--out", "{tmp}/a-file"], "--out"),
    ("reproduce --out under a file", reproduce_main, ["--out", "{tmp}/a-file/report"], "--out"),
    ("reproduce --threads -1", reproduce_main, ["--out", "{tmp}/r", "--threads", "-1"], "--threads"),
    ("reproduce --threads 0", reproduce_main, ["--out", "{tmp}/r", "--threads", "0"], "--threads"),
    ("reproduce --train_file missing", reproduce_main, ["--out", "{tmp}/r", "--train_file", "{tmp}/nope.txt"],
     "--train_file"),
    ("reproduce --train_file empty", reproduce_main, ["--out", "{tmp}/r", "--train_file", "{tmp}/empty.txt"],
     "--train_file"),
    ("reproduce --only ''", reproduce_main, ["--out", "{tmp}/r", "--only", ""], "--only"),
    ("reproduce --only p3", reproduce_main, ["--out", "{tmp}/r", "--only", "p3"], "p3"),
    ("reproduce --budget nope", reproduce_main, ["--out", "{tmp}/r", "--budget", "nope"], "--budget"),
    ("reproduce no --out", reproduce_main, [], "--out"),
]


def snapshot(*folders):
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in sorted(f.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-inputs")
    (folder / "a-file").write_text("x")
    (folder / "empty.txt").write_text("")
    (folder / "malformed.json").write_text(json.dumps({"harness": "dynamics", "mean_error": {}}))
    (folder / "comparison.json").write_text(json.dumps({"results": [str(folder / "gone.json")]}))
    return folder


@pytest.mark.parametrize("case_id, main, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_table(case_id, main, argv, expected, inputs, lm_dir, regression_dir, capsys):
    before = snapshot(lm_dir, regression_dir)
    models = {"lm": str(lm_dir), "regression": str(regression_dir)}
    argv = [models.get(a, a.replace("{tmp}", str(inputs))) for a in argv]
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 2, (code, err)
    assert len(err) == 1 and ": error: " in err[0], err
    assert expected in err[0], err[0]
    assert snapshot(lm_dir, regression_dir) == before
    assert not (inputs / "r").exists() and not (inputs / "cmp").exists()


def test_a_model_with_a_changed_file_is_refused(tmp_path, regression_dir, capsys):
    """Models written by train_lm.py carry manifest.json; a flipped byte or an edited config is named."""
    import shutil

    from mesa_lm.training.checkpoints import write_manifest

    model = tmp_path / "model"
    shutil.copytree(regression_dir, model)
    write_manifest(model)
    weights = bytearray((model / "model.safetensors").read_bytes())
    weights[len(weights) // 2] ^= 0xFF
    (model / "model.safetensors").write_bytes(bytes(weights))
    one_line_error(capsys, dynamics_main([str(model)]), "corrupt", "model.safetensors")
    one_line_error(capsys, icl_regression_main([str(model)]), "corrupt", "model.safetensors")


def test_scripts_as_users_run_them(regression_dir, inputs):
    """In a subprocess: one line on stderr, exit status 2, no traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    environment = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    for argv, word in (([str(repo / "eval" / "icl_regression.py"), str(regression_dir), "--knn", "-1"], "--knn"),
                       (["-m", "mesa_lm.reproduce", "--out", str(inputs / "a-file")], "--out")):
        result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=environment, cwd=repo,
                                timeout=120)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and word in lines[0], result.stderr[-2000:]
