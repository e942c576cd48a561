"""lm-evaluation-harness (the `lm_eval` extra) scores a saved mixed model on the repository's `text_file` task with the
same bits per byte as our perplexity harness: `lm_eval --model_args max_length=L` rolls windows of L predicted tokens
with one token of context, which is our `--window L+1 --stride L` when the text fills whole windows (lm_eval
right-aligns a last partial window; here none is partial)."""

import math
from pathlib import Path

import pytest
import torch

from mesa_lm import MesaConfig, MesaForCausalLM
from mesa_lm.evaluation.perplexity import run_perplexity

REPO = Path(__file__).resolve().parents[2]
L = 20  # lm_eval's max_length: tokens predicted per window
TEXT = ("Héllo wörld: the mesa layer solves a ridge regression at every position. Linear attention sums values "
        "weighted by key and query products; softmax attention normalises the scores. 😀 ") * 4


@pytest.fixture(scope="module")
def mixed_model(tmp_path_factory):
    """A random softmax + linear + mesa LM with a byte-level BPE, saved with its code (remote-code folder)."""
    from mesa_lm.data.text import train_bpe_tokenizer

    folder = tmp_path_factory.mktemp("mixed")
    tokenizer = train_bpe_tokenizer([TEXT], vocab_size=300, model_max_length=64)
    torch.manual_seed(0)
    config = MesaConfig(vocab_size=len(tokenizer), hidden_size=16, num_attention_heads=2,
                        mixer_types=["softmax", "linear", "mesa"], mlp_type="none", max_position_embeddings=64,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    MesaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, tokenizer


def test_lm_eval_bits_per_byte_equal_ours(mixed_model, tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    folder, tokenizer = mixed_model
    # the longest prefix of the text (cut at a space) whose tokens fill whole windows of L
    cuts = [i for i, c in enumerate(TEXT) if c == " "]
    text = next(TEXT[:i] for i in reversed(cuts) if len(tokenizer(TEXT[:i], add_special_tokens=False)["input_ids"]) % L == 0)
    tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert tokens >= 3 * L
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")

    results = simple_evaluate(
        model="hf", model_args=f"pretrained={folder},trust_remote_code=True,max_length={L},dtype=float32",
        tasks=["text_file"], device="cpu", batch_size=4,
        task_manager=TaskManager(include_path=str(REPO / "eval" / "lm_eval_tasks"), include_defaults=False,
                                 metadata={"text_file": str(path)}),
    )["results"]["text_file"]
    ours = run_perplexity(str(folder), text_file=str(path), window=L + 1, stride=L, progress=False)
    assert ours["bytes_scored"] == len(text.encode("utf-8"))
    assert math.isclose(results["bits_per_byte,none"], ours["bits_per_byte"], rel_tol=0, abs_tol=1e-6)
    assert math.isclose(results["byte_perplexity,none"], 2 ** ours["bits_per_byte"], rel_tol=1e-6)
