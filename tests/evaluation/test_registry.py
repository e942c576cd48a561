"""The harness registry: a harness defined in one file runs through `compare` and the generic command, no other edit."""

import json
from dataclasses import dataclass

import pytest

from mesa_lm.cli_options import positive_int
from mesa_lm.evaluation import harnesses as registry
from mesa_lm.evaluation.cli import compare_main, evaluate_main
from mesa_lm.evaluation.harnesses import Harness, register_harness, registered_harnesses
from mesa_lm.evaluation.harnesses.base import harness_option


@pytest.fixture
def toy_harness():
    """Registers `ParameterCount` (counts parameters, times --scale) for one test, then restores the registry."""
    before = dict(registered_harnesses())

    @register_harness
    class ParameterCount(Harness):
        name, needs, description = "parameter_count", "causal_lm", "parameters of the model, times a scale"

        @dataclass
        class Options:
            """parameter count"""

            scale: int = harness_option(1, "multiply the count (default: 1)", type=positive_int)

        def run(self, checkpoint, options, progress=True):
            from safetensors.torch import load_file

            weights = load_file(f"{checkpoint}/model.safetensors")
            return {"harness": self.name, "count": options.scale * sum(w.numel() for w in weights.values())}

        def summary(self, result):
            return [f"count {result['count']}"]

        def table(self, results):
            rows = [{"name": n, "kind": "model", "values": {"count": str(r["count"])}} for n, r in results.items()]
            return {"columns": ["count"], "rows": rows, "note": "parameters times the scale"}

    yield ParameterCount
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)


def test_a_harness_in_one_file_runs_in_compare(toy_harness, lm_dir, gpt2_dir, regression_dir, tmp_path, capsys):
    from safetensors.torch import load_file

    out = tmp_path / "cmp"
    status = compare_main([f"mesa={lm_dir}", f"gpt2={gpt2_dir}", f"reg={regression_dir}", "--output_dir", str(out),
                           "--harnesses", "parameter_count", "--parameter_count.scale", "3"])
    assert status == 0, capsys.readouterr().err
    record = json.loads((out / "comparison.json").read_text())
    expected = 3 * sum(w.numel() for w in load_file(f"{lm_dir}/model.safetensors").values())
    rows = {row["name"]: row["values"]["count"] for row in record["tables"]["parameter_count"]["rows"]}
    assert rows["mesa"] == str(expected) and set(rows) == {"mesa", "gpt2"}
    assert record["skipped"] == ["parameter_count on reg (regression checkpoint)"] and record["figures"] == []
    assert "| mesa | " + str(expected) + " |" in (out / "comparison.md").read_text()
    # and the generic command runs it too
    assert evaluate_main(["parameter_count", str(lm_dir), "--scale", "2"]) == 0
    assert f"count {2 * expected // 3}" in capsys.readouterr().out


def test_built_in_harnesses_are_registered():
    assert {"perplexity", "icl_regression", "dynamics"} <= set(registered_harnesses())
    with pytest.raises(ValueError, match="unknown harness 'nope'; allowed: "):
        registry.get_harness("nope")
