"""Perplexity against a plain loop; block-wise and sliding windows; a stock GPT-2; 2 processes equal 1."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from mesa_lm.evaluation.perplexity import make_windows, run_perplexity, tokenize_stream
from mesa_lm.evaluation.perplexity import load_split

REPO = Path(__file__).resolve().parents[2]


def plain_loop_nll(model_dir, text_file, window, stride):
    """Mean NLL by the textbook loop: for each window, score the tokens not scored before, one sequence at a time."""
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenize_stream(load_split(str(text_file))[0], tokenizer).ids
    total, count, done = 0.0, 0, 1  # token 0 has no context
    begin = 0
    while done < len(ids):
        chunk = ids[begin : begin + window]
        with torch.no_grad():
            logp = F.log_softmax(model(chunk[None]).logits[0].double(), -1)
        for j in range(1, len(chunk)):
            if begin + j >= done:
                total -= logp[j - 1, chunk[j]].item()
                count += 1
        done = begin + len(chunk)
        begin = begin + window if stride is None else begin + stride
    return total / count, count


@pytest.mark.parametrize("stride", [None, 24])
def test_perplexity_equals_exp_mean_nll_of_a_plain_loop(lm_dir, text_file, stride):
    result = run_perplexity(str(lm_dir), text_file=str(text_file), window=64, stride=stride, batch_size=3, progress=False)
    mean_nll, count = plain_loop_nll(lm_dir, text_file, 64, stride)
    if stride is None:  # block-wise: the first token of every block is not scored
        assert result["tokens_scored"] == count
    assert math.isclose(result["mean_nll"], mean_nll, rel_tol=1e-6)
    assert math.isclose(result["perplexity"], math.exp(mean_nll), rel_tol=1e-6)
    curve = result["loss_per_position"]
    assert curve[0] is None and len(curve) == 64
    early, late = result["icl_positions"]
    assert result["icl_score"] == pytest.approx(curve[late] - curve[early])


def test_windows_score_every_token_once():
    stream = torch.arange(100)
    for window, stride in ((16, 16), (16, 5), (16, 1), (100, 100)):
        ids, weights = make_windows(stream, window, stride)
        scored = sorted(int(ids[i, j]) for i, j in weights.nonzero().tolist())
        expected = [t for t in range(1, 100) if stride < window or t % window != 0]  # token 0 has no context
        assert scored == expected, (window, stride)


def test_stock_transformers_model(gpt2_dir, text_file):
    result = run_perplexity(str(gpt2_dir), text_file=str(text_file), window=32, progress=False)
    assert result["model"]["class"] == "GPT2LMHeadModel"
    assert math.isclose(result["mean_nll"], plain_loop_nll(gpt2_dir, text_file, 32, None)[0], rel_tol=1e-6)


def test_two_processes_equal_one(lm_dir, text_file, tmp_path):
    """torchrun with 2 CPU processes (gloo); an odd number of windows makes gather_for_metrics drop padding."""
    common = [str(REPO / "eval" / "perplexity.py"), str(lm_dir), "--text_file", str(text_file), "--window", "40",
              "--batch_size", "2", "--max_tokens", "1000", "--no_progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *common,
                          "--output", str(tmp_path / "two.json")], capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    one = run_perplexity(str(lm_dir), text_file=str(text_file), window=40, batch_size=2, max_tokens=1000, progress=False)
    result = json.loads((tmp_path / "two.json").read_text())
    assert result["num_processes"] == 2 and one["num_processes"] == 1
    assert result["windows"] % 4 != 0  # uneven split: some batches were padded, then dropped
    assert result["tokens_scored"] == one["tokens_scored"]
    # Each window's float32 logits come from a batch of other windows and another thread count in the two runs, which
    # BLAS may round differently (equal to the bit here): allow float32 rounding of the per-token NLL, 16 eps32. A
    # window scored twice or dropped moves these means by about 1 / windows, far more.
    tol = 16 * torch.finfo(torch.float32).eps
    assert math.isclose(math.log(result["perplexity"]), math.log(one["perplexity"]), rel_tol=tol)
    for a, b in zip(result["loss_per_position"][1:], one["loss_per_position"][1:]):
        assert math.isclose(a, b, rel_tol=tol)
