"""Models trained by train_lm.py on each synthetic task evaluate with no task options: the harnesses read task.json.
A folder without it (saved before tasks were recorded) still evaluates, with one warning naming what to pass."""

import shutil
import warnings

import pytest

from mesa_lm.evaluation.cli import dynamics_main
from mesa_lm.evaluation.harnesses import get_harness
from mesa_lm.evaluation.harnesses.base import TaskAssumed
from mesa_lm.training.cli import main as train_main

TINY = ["--preset", "none", "--config_overrides",
        '{"hidden_size": 16, "head_dim": 8, "intermediate_size": 32, "num_attention_heads": 2, '
        '"mixer_types": ["softmax", "mesa"], "max_position_embeddings": 32}',
        "--max_steps", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
        "--eval_batches", "1", "--logging_steps", "1", "--report_to", "none", "--save_steps", "0"]
RUNS = {
    "partially_observed": ["--task", "dynamics", "--dynamics", "partially_observed", "--state_dim", "3",
                           "--hidden_dim", "6", "--seq_len", "9", "--noise_std", "0.02"],
    "constructed": ["--task", "dynamics", "--tokens", "constructed", "--state_dim", "3", "--seq_len", "7"],
    "fewshot_regression": ["--task", "fewshot_regression", "--state_dim", "3", "--num_pairs", "5",
                           "--input_distribution", "normal"],
    "scalar_regression": ["--task", "scalar_regression", "--state_dim", "3", "--num_pairs", "4"],
}
SMALL = {"dynamics": dict(num_sequences=8, num_train=8, prop2_steps=(1,), prop2_iterations=2, num_resamples=2),
         "icl_regression": dict(formats=("plain",), num_prompts=8, num_tune_prompts=8, num_resamples=2)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folders = {}
    for name, options in RUNS.items():
        folders[name] = tmp_path_factory.mktemp(name)
        assert train_main([*TINY, *options, "--output_dir", str(folders[name]), "--overwrite_output_dir"]) == 0
    return folders


def evaluate(harness_name: str, folder, **options) -> dict:
    harness = get_harness(harness_name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TaskAssumed)  # nothing assumed: the saved task decides
        return harness.run(str(folder), harness.Options(**SMALL[harness_name], **options), progress=False)


def test_dynamics_models_evaluate_with_no_task_options(trained):
    partial = evaluate("dynamics", trained["partially_observed"])
    assert (partial["dynamics"], partial["seq_len"], partial["noise_std"], partial["state_dim"]) == (
        "partially_observed", 9, 0.02, 3)
    constructed = evaluate("dynamics", trained["constructed"])
    assert constructed["token_layout"] == "constructed" and constructed["seq_len"] == 7
    # few-shot transfer of a dynamics model: the prompts are built in its token layout (pairs: not a dynamics option)
    assert evaluate("icl_regression", trained["constructed"], pairs=3)["token_layout"] == "constructed"


def test_regression_models_evaluate_with_no_task_options(trained):
    vector = evaluate("icl_regression", trained["fewshot_regression"])
    assert (vector["task"], vector["pairs"], vector["distribution"], vector["dim"]) == ("vector", 5, "normal", 3)
    scalar = evaluate("icl_regression", trained["scalar_regression"])  # before task.json: "use --task scalar"
    assert (scalar["task"], scalar["pairs"], scalar["out_dim"]) == ("scalar", 4, 1)


def test_a_given_option_wins_over_the_saved_task(trained):
    harness = get_harness("dynamics")
    result = harness.run(str(trained["partially_observed"]),
                         harness.Options(**SMALL["dynamics"], dynamics="fully_observed", seq_len=5), progress=False)
    assert (result["dynamics"], result["seq_len"]) == ("fully_observed", 5)


def test_a_folder_without_task_json_loads_and_says_what_to_pass(trained, tmp_path, capsys):
    legacy = tmp_path / "legacy"
    shutil.copytree(trained["partially_observed"], legacy)
    (legacy / "task.json").unlink()
    status = dynamics_main([str(legacy), "--seq_len", "9", "--num_sequences", "8", "--num_train", "8", "--prop2_steps", "1",
                            "--prop2_iterations", "2", "--num_resamples", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 0, err
    assert len(err) == 1 and err[0].startswith("dynamics: warning: ") and "has no task.json" in err[0], err
    for flag in ("--dynamics fully_observed", "--noise_std 0.01", "--hidden_dim 15", "--tokens plain"):
        assert flag in err[0]
    assert "--seq_len" not in err[0]  # given: not assumed


def test_perplexity_scores_the_validation_file_of_the_saved_text_task(lm_dir, text_file, tmp_path):
    from mesa_lm.data.tasks import make_task, save_task

    folder = tmp_path / "lm"
    shutil.copytree(lm_dir, folder)
    save_task(folder, make_task("text", train_file="train.txt", validation_file=str(text_file)))
    harness = get_harness("perplexity")
    result = harness.run(str(folder), harness.Options(window=32, max_tokens=100), progress=False)
    assert result["data"]["source"] == str(text_file)
    default = harness.run(str(lm_dir), harness.Options(window=32, max_tokens=100), progress=False)  # no task.json
    assert default["data"]["source"] == "stdlib_docstrings:validation"
