"""The smoke form of the prepared GPU run (`benchmarks/gpu_check.py --device cpu`): it runs and its figures hold."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPS = ["softmax (SDPA)", "linear chunked", "linear gated chunked", "mesa chunked", "mesa gated chunked (cholesky)",
       "mesa gated chunked (cg)", "mesa gated default (method='auto')"]  # fmt: skip


def test_smoke_form_checks_every_op_and_times_ops_and_models(tmp_path):
    out = tmp_path / "smoke.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["machine"]["form"] == "smoke"

    checks = result["checks"]
    assert {(r["op"], r["precision"]) for r in checks} == {(op, p) for op in OPS for p in ("float32", "bfloat16")}
    for r in checks:
        assert r["ok"] and r["finite"], r
        errors = [r["output_error"], *r["gradient_errors"].values()]
        assert all(0 <= e <= r["limits"][1] for e in errors), r
    # The gated ops report a gradient for the gates and Lambda, not just q, k, v.
    gated = next(r for r in checks if r["op"] == "mesa gated chunked (cholesky)")
    assert set(gated["gradient_errors"]) == {"q", "k", "v", "lam", "gamma", "beta"}

    first_T = result["config"]["lengths"][0]
    for precision in ("bfloat16", "float32"):
        group = {r["op"]: r for r in result["ops"] if r["precision"] == precision and r["T"] == first_T}
        assert set(group) == set(OPS)
        assert group["softmax (SDPA)"]["fwd_bwd_ratio_sdpa"] == 1.0
        for r in group.values():
            assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("fwd_ms", "fwd_bwd_ms", "fwd_bwd_ratio_sdpa")), r

    first_model_T = result["config"]["model_lengths"][0]
    model = [r for r in result["model"] if r["T"] == first_model_T]
    assert {(r["preset"], r["autocast"]) for r in model} == {
        (p, a) for p in ("mesanet", "docstrings-hybrid") for a in ("bfloat16", "float32")
    }
    for r in model:
        assert r["params"] > 0 and r["llama_params"] > 0
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("tokens_per_s", "llama_tokens_per_s", "ratio")), r
        assert math.isfinite(r["first_loss"]) and math.isfinite(r["llama_first_loss"])

    # The Markdown tables for docs/benchmarks.md are printed.
    assert "14 of 14 pass" in run.stdout
    for header in ("| op | precision | output error |", "| op | precision | D | T |", "| preset | precision | T |"):
        assert header in run.stdout
