"""Language modelling end to end: the embedded corpus by default, a local file, and a folder pipeline() loads."""

import json

import torch
from transformers import pipeline

import mesa_lm  # noqa: F401  (registers the Auto classes)

from .runs import losses, run

SMALL = ["--config_overrides", '{"hidden_size": 32, "num_attention_heads": 2, "max_position_embeddings": 512}',
         "--report_to", "none", "--logging_steps", "1", "--per_device_train_batch_size", "4", "--block_size", "32",
         "--max_eval_blocks", "16"]


def test_default_preset_trains_on_the_embedded_corpus_and_pipeline_generates(tmp_path):
    out = tmp_path / "docstrings"
    result = run([*SMALL, "--output_dir", str(out), "--max_steps", "12", "--eval_steps", "6", "--save_steps", "0",
                  "--vocab_size", "512", "--warmup_steps", "2"])
    assert "tokens/s" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["mixer_types"] == ["softmax", "mesa"] and config["vocab_size"] == 512
    evals = [json.loads(line)["eval_loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if "eval_loss" in line]
    assert len(evals) == 2 and evals[1] < evals[0]  # validation loss falls
    generator = pipeline("text-generation", model=str(out))
    text = generator("Return the", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert text.startswith("Return the") and len(text) > len("Return the")


def test_local_text_file_with_mixed_precision_and_accumulation(tmp_path):
    (tmp_path / "train.txt").write_text("A stitch in time saves nine. Look before you leap. " * 300)
    out = tmp_path / "local"
    run([*SMALL, "--output_dir", str(out), "--train_file", str(tmp_path / "train.txt"), "--vocab_size", "300",
         "--max_steps", "4", "--eval_steps", "0", "--save_steps", "0", "--mixed_precision", "bf16",
         "--gradient_accumulation_steps", "2"])
    assert len(losses(out)) == 4 and all(torch.isfinite(torch.tensor(losses(out))))
    assert (out / "tokenizer.json").is_file()
