"""The compare command on small checkpoints: tables, figures and result files."""

import json

from mesa_lm.evaluation.cli import compare_main


def test_compare_writes_tables_figures_and_results(lm_dir, regression_dir, text_file, tmp_path, capsys):
    out = tmp_path / "cmp"
    status = compare_main([
        f"mesa-lm={lm_dir}", f"regressor={regression_dir}", "--output_dir", str(out),
        "--perplexity.text_file", str(text_file), "--perplexity.window", "32",
        "--icl.pairs", "6", "--icl.num_prompts", "40", "--icl.num_tune_prompts", "20", "--icl.formats", "plain", "eos",
        "--icl.num_resamples", "20",
        "--dynamics.seq_len", "10", "--dynamics.num_sequences", "40", "--dynamics.num_train", "20",
        "--dynamics.prop2_steps", "1", "--dynamics.prop2_iterations", "5", "--dynamics.num_resamples", "20",
        "--test_time_compute.text_file", str(text_file), "--test_time_compute.max_tokens", "200",
        "--test_time_compute.num_sequences", "16", "--test_time_compute.cg_steps", "1", "2",
        "--test_time_compute.timing_repeats", "1", "--test_time_compute.num_resamples", "20",
    ])
    assert status == 0, capsys.readouterr().err
    record = json.loads((out / "comparison.json").read_text())
    assert set(record["tables"]) == {"perplexity", "icl_regression", "dynamics", "test_time_compute"}
    assert sorted(p.rsplit("/", 1)[1] for p in record["figures"]) == [
        "dynamics.png", "icl_regression.png", "perplexity_per_position.png", "test_time_compute.png"]
    assert all((out / name).stat().st_size > 10_000 for name in ("dynamics.png", "icl_regression.png"))
    # each checkpoint skips the harnesses of the other kind, and both the recall harness (no recall task)
    assert len(record["skipped"]) == 5
    icl = record["tables"]["icl_regression"]
    names = [row["name"] for row in icl["rows"]]
    assert names[:2] == ["regressor (plain)", "regressor (eos)"] and "least_squares" in names
    markdown = (out / "comparison.md").read_text()
    assert "| regressor (plain) |" in markdown and "*least_squares* (baseline)" in markdown
