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


UNICODE_TEXT = ("Héllo wörld — the mesa layer solves a ridge regression; 😀 linear attention sums values. "
                "Ça marche très bien, naïve café. ") * 4


def covered_bytes(tokenizer, text: str, ids: list[int]) -> list[int]:
    """UTF-8 bytes of the characters each token of a byte-level BPE completes (a character counts with the token
    that holds its last byte), from the token strings (GPT-2's byte <-> character table: printable Latin-1 bytes are
    themselves, the others are characters 256, 257, ... in byte order) and the text's UTF-8 character boundaries."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    shifted = [b for b in range(256) if b not in printable]
    decoder = {**{chr(b): b for b in printable}, **{chr(256 + n): b for n, b in enumerate(shifted)}}
    token_bytes = [len(bytes(decoder[c] for c in token)) for token in tokenizer.convert_ids_to_tokens(ids)]
    assert sum(token_bytes) == len(text.encode("utf-8"))
    boundaries = [0]
    for char in text:
        boundaries.append(boundaries[-1] + len(char.encode("utf-8")))
    covered, end, completed = [], 0, 0
    for n in token_bytes:
        end += n
        last = max(b for b in boundaries if b <= end)  # the last character boundary within this token's bytes
        covered.append(last - completed)
        completed = last
    return covered


@pytest.mark.parametrize("scoring", ["block-wise, a block starting inside a character", "every token"])
def test_bits_per_byte_equal_an_independent_recomputation(lm_dir, tmp_path, scoring):
    """Sum of NLL over the scored text tokens (from a plain per-window loop) / UTF-8 bytes of the characters they
    complete (from the byte-level token strings, not the harness's offsets) / ln 2; per character when every token is
    scored."""
    path = tmp_path / "text.txt"
    path.write_text(UNICODE_TEXT, encoding="utf-8")
    model = AutoModelForCausalLM.from_pretrained(lm_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    text_ids = tokenizer(UNICODE_TEXT, add_special_tokens=False)["input_ids"]
    token_bytes = covered_bytes(tokenizer, UNICODE_TEXT, text_ids)
    eos = tokenizer.eos_token_id
    ids = torch.tensor([eos, *text_ids, eos])  # the stream: EOS, the text's tokens, EOS
    if scoring == "every token":
        window, stride = 48, 47
    else:  # a window whose unscored block starts include a token inside a split character (an emoji's first bytes)
        window = next(w for w in range(64, 8, -1)
                      if any(token_bytes[k * w - 1] == 0 for k in range(1, len(text_ids) // w + 1)))
        stride = None
    step = stride or window
    nll_sum, bytes_sum, done, begin = 0.0, 0, 1, 0
    while done < len(ids):  # each token is scored once, in the first window that holds it with context
        chunk = ids[begin : begin + window]
        with torch.no_grad():
            logp = F.log_softmax(model(chunk[None]).logits[0].double(), -1)
        for j in range(1, len(chunk)):
            position = begin + j
            if position >= done and 1 <= position <= len(text_ids):  # a text token (not an EOS), scored here
                nll_sum -= logp[j - 1, chunk[j]].item()
                bytes_sum += token_bytes[position - 1]
        done = begin + len(chunk)
        begin += step
    result = run_perplexity(str(lm_dir), text_file=str(path), window=window, stride=stride, batch_size=4,
                            progress=False)
    assert result["bytes_scored"] == bytes_sum
    assert math.isclose(result["bits_per_byte"], nll_sum / bytes_sum / math.log(2), rel_tol=0, abs_tol=1e-6)
    if scoring == "every token":  # the whole text, per byte and per character
        assert bytes_sum == len(UNICODE_TEXT.encode("utf-8")) and result["characters_scored"] == len(UNICODE_TEXT)
        assert math.isclose(result["bits_per_character"], nll_sum / len(UNICODE_TEXT) / math.log(2), abs_tol=1e-6)
