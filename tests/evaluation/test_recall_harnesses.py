"""The recall and test-time-compute harnesses through the registry: compare runs them from the saved task alone,
skips what does not apply, and writes their tables and figures; the generic command runs them too."""

import json

import pytest
import torch

from mesa_lm import MesaConfig, MesaForCausalLM
from mesa_lm.evaluation.cli import compare_main, evaluate_main


def recall_model(folder, mixers):
    from mesa_lm.data.tasks import make_task, save_task

    torch.manual_seed(0)
    config = MesaConfig(vocab_size=32, hidden_size=16, num_attention_heads=2, mixer_types=mixers, mlp_type="none",
                        max_position_embeddings=64)
    MesaForCausalLM(config).save_pretrained(folder)
    save_task(folder, make_task("mqar", vocab_size=32, seq_len=24, num_pairs=4))
    return folder


@pytest.fixture(scope="module")
def recall_dirs(tmp_path_factory):
    return {"softmax": recall_model(tmp_path_factory.mktemp("softmax"), ["softmax", "softmax"]),
            "hybrid": recall_model(tmp_path_factory.mktemp("hybrid"), ["softmax", "mesa"])}


def test_compare_runs_recall_and_test_time_compute_from_the_saved_task(recall_dirs, lm_dir, text_file, tmp_path,
                                                                       capsys):
    out = tmp_path / "cmp"
    status = compare_main([f"softmax={recall_dirs['softmax']}", f"hybrid={recall_dirs['hybrid']}", f"lm={lm_dir}",
                           "--output_dir", str(out), "--recall.num_sequences", "8", "--recall.num_resamples", "20",
                           "--test_time_compute.cg_steps", "1", "4", "--test_time_compute.num_sequences", "8",
                           "--test_time_compute.max_tokens", "200", "--test_time_compute.text_file", str(text_file),
                           "--test_time_compute.timing_repeats", "1",
                           "--test_time_compute.num_resamples", "20", "--harnesses", "recall", "test_time_compute"])
    assert status == 0, capsys.readouterr().err
    record = json.loads((out / "comparison.json").read_text())
    recall = {row["name"]: row["values"] for row in record["tables"]["recall"]["rows"]}
    assert set(recall) == {"softmax", "hybrid"}
    # the grid from the saved task: 1, 2, 4, 8 pairs at T = 24 and 48, but 8 pairs do not fit in 24 tokens
    columns = record["tables"]["recall"]["columns"]
    assert columns[:7] == [f"pairs={n}, T=24" for n in (1, 2, 4)] + [f"pairs={n}, T=48" for n in (1, 2, 4, 8)]
    assert all(recall["hybrid"][c].count("[") == 1 for c in columns[:7])
    assert recall["softmax"]["trained at"] == "pairs=4, T=24"
    assert int(recall["softmax"]["state (floats)"]) == 2 * (2 * 24 * 16)  # keys and values of 2 softmax layers
    assert int(recall["hybrid"]["state (floats)"]) == 2 * 24 * 16 + 2 * (8 + 8) * 8  # + H and G of 2 heads
    solves = [row["name"] for row in record["tables"]["test_time_compute"]["rows"]]
    assert solves == [f"{m} {s}" for m in ("hybrid", "lm") for s in ("woodbury", "cholesky", "cg-1", "cg-4")]
    assert set(record["skipped"]) == {"test_time_compute on softmax (causal_lm checkpoint)",
                                      "recall on lm (causal_lm checkpoint)"}
    assert {p.rsplit("/", 1)[1] for p in record["figures"]} == {"recall.png", "test_time_compute.png"}


def test_perplexity_skips_models_of_token_tasks(recall_dirs, lm_dir):
    from mesa_lm.data.tasks import load_task, make_task
    from mesa_lm.evaluation.harnesses import get_harness

    perplexity = get_harness("perplexity")
    assert not perplexity.applies_to("causal_lm", load_task(recall_dirs["hybrid"]))  # no text tokenizer
    assert perplexity.applies_to("causal_lm", None) and perplexity.applies_to("causal_lm", make_task("text"))


def test_the_generic_command_runs_them_and_refuses_what_does_not_apply(recall_dirs, capsys):
    assert evaluate_main(["recall", str(recall_dirs["hybrid"]), "--sizes", "2", "--seq_lens", "24",
                          "--num_sequences", "4", "--num_resamples", "10"]) == 0
    assert "pairs=2    seq_len=24    accuracy" in capsys.readouterr().out
    assert evaluate_main(["test_time_compute", str(recall_dirs["softmax"]), "--num_sequences", "4"]) == 2
    assert "has no mesa layer (mixers ['softmax', 'softmax'])" in capsys.readouterr().err
