"""Throughput in the metrics: model FLOPs per token against a hand count, peak FLOP/s by device name, and tokens/s
and MFU in metrics.jsonl consistent with the tokens and seconds recorded beside them."""

import json

import pytest
import torch

from mesa_lm import MesaConfig, MesaForCausalLM, MesaForCausalRegression
from mesa_lm.training import throughput
from mesa_lm.training.cli import main
from mesa_lm.training.throughput import model_flops_per_token, peak_flops, table_peak_flops

from .runs import TINY


def test_flops_per_token_equal_a_hand_count():
    config = MesaConfig(vocab_size=11, hidden_size=8, num_attention_heads=2, mixer_types=["softmax", "linear", "mesa"],
                        mlp_type="gelu", intermediate_size=16)
    T, H, d = 10, 2, 4  # head_dim = value_head_dim = 8 / 2
    # matmul weights: per layer q, k, v, o (8 x 8 each) and the MLP (8 x 16 twice); the tied head 11 x 8 once
    matmul = 3 * (4 * 64 + 2 * 128) + 88
    softmax = 6 * T * H * (d + d)  # QK^T and AV over the full length
    linear = 12 * H * d * d  # k v^T and q^T S
    mesa = 6 * H * (2 * d * d + 2 * d * d + d**3 / 3)  # R and S updates, Cholesky, two triangular solves, S x
    assert model_flops_per_token(MesaForCausalLM(config), T) == pytest.approx(6 * matmul + softmax + linear + mesa,
                                                                              rel=1e-12)


def test_dpfp_features_and_concatenated_positions_enter_the_sequence_terms():
    linear = MesaForCausalLM(MesaConfig(vocab_size=11, hidden_size=8, num_attention_heads=2, mixer_types=["linear"],
                                        linear_feature_map="dpfp", linear_dpfp_nu=3, mlp_type="none"))
    assert throughput.mixer_flops_per_token(linear.model.layers[0].mixer, 5) == 12 * 2 * (2 * 3 * 4) * 4
    # [P1]: 40 position channels on layer 1's queries and keys
    concat = MesaForCausalRegression(MesaConfig.from_preset("hybrid-mesa"))
    assert throughput.mixer_flops_per_token(concat.model.layers[0].mixer, 50) == 6 * 50 * 4 * (20 + 40 + 20)  # head_dim 20


@pytest.mark.parametrize(
    "name, precision, tf32, expected",
    [
        ("NVIDIA H100 80GB HBM3", "bf16", False, 989e12),
        ("NVIDIA H100 PCIe", "bf16", False, 756e12),
        ("NVIDIA H200", "no", False, 66.9e12),  # true fp32 matmuls (torch's default)
        ("NVIDIA H200", "no", True, 494.5e12),
        ("NVIDIA A100-SXM4-80GB", "fp16", False, 312e12),
        ("NVIDIA GeForce GTX 1080", "bf16", False, None),  # not in the table: no MFU rather than a made-up number
    ],
)
def test_peak_flops_by_device_name(name, precision, tf32, expected):
    assert table_peak_flops(name, precision, tf32) == expected


def test_on_cpu_only_the_option_gives_a_peak(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert peak_flops("bf16") is None
    assert peak_flops("bf16", peak_tflops=2.5) == 2.5e12


def records(out) -> list[dict]:
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_tokens_per_second_and_mfu_agree_with_tokens_and_time_in_the_records(tmp_path):
    args = [*TINY, "--per_device_train_batch_size", "8", "--eval_steps", "3", "--save_steps", "3", "--max_steps", "6",
            "--logging_steps", "2"]
    assert main([*args, "--output_dir", str(tmp_path / "a"), "--peak_tflops", "0.5"]) == 0
    flops = json.loads((tmp_path / "a" / "train_results.json").read_text())["model_flops_per_token"]
    logged = records(tmp_path / "a")
    assert [r["step"] for r in logged] == [2, 4, 6]
    seq_len = 12  # TINY's --seq_len
    for r in logged:
        assert r["tokens_seen"] == r["step"] * 8 * seq_len
        assert r["tokens_per_process"] == 2 * 8 * seq_len  # two steps per logging interval, one process
        assert r["interval_seconds"] > 0
        assert r["tokens_per_second_per_process"] == pytest.approx(r["tokens_per_process"] / r["interval_seconds"],
                                                                   rel=1e-12)
        assert r["mfu"] == pytest.approx(flops * r["tokens_per_second_per_process"] / 0.5e12, rel=1e-12)
    assert main([*args, "--output_dir", str(tmp_path / "b")]) == 0
    assert all("mfu" not in r and r["tokens_per_second_per_process"] > 0 for r in records(tmp_path / "b"))


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_bad_peak_is_one_line(tmp_path, capsys, value):
    assert main([*TINY, "--output_dir", str(tmp_path / "x"), "--peak_tflops", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"train_lm.py: error: peak_tflops={float(value)!r} is invalid: must be a finite number > 0 "
                   "(TFLOP/s of one device)"]
    assert not (tmp_path / "x").exists()
