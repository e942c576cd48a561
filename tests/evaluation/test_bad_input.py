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
