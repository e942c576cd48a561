"""Loading and sharing: Auto classes, safetensors round trips, and remote code in a process without mesa_lm."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from mesa_lm import MesaConfig, MesaForCausalLM, MesaForCausalRegression, MesaModel

from .mixes import VOCAB, make_model


def test_auto_classes_are_registered(tmp_path):
    model = make_model("softmax+linear+mesa")
    model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), MesaConfig)
    assert type(AutoModel.from_pretrained(tmp_path)) is MesaModel
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path)) is MesaForCausalLM


@pytest.mark.parametrize("mix", ["softmax+linear+mesa", "mesa"])
def test_save_then_load_gives_identical_logits(mix, tmp_path):
    model = make_model(mix)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, VOCAB, (2, 11))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    # tied embeddings stay tied after loading
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()


def test_regression_model_round_trip(tmp_path):
    model = MesaForCausalRegression(MesaConfig.from_preset("hybrid-mesa")).eval()
    model.save_pretrained(tmp_path)
    loaded = MesaForCausalRegression.from_pretrained(tmp_path).eval()
    inputs = torch.randn(3, 12, 10)
    with torch.no_grad():
        assert torch.equal(loaded(inputs).predictions, model(inputs).predictions)


def test_saved_folder_carries_auto_map_and_code(tmp_path):
    make_model("softmax").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_mesa.MesaForCausalLM"
    assert config["layer_types"] == ["full_attention", "full_attention"]
    for name in ("configuration_mesa.py", "modeling_mesa.py", "ops_mesa_chunk.py", "layers_mesa_layer.py"):
        imports = [line.strip() for line in (tmp_path / name).read_text().splitlines() if "import " in line]
        assert not [line for line in imports if "mesa_lm" in line or line.startswith("from ..")], name


def test_trust_remote_code_load_in_a_fresh_process_without_mesa_lm(tmp_path):
    model = make_model("softmax+linear+mesa")
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    ids = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        torch.save({"ids": ids, "logits": model(ids).logits}, tmp_path / "reference.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["mesa_lm"] = None  # any import of mesa_lm now fails
        import torch
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        assert "mesa_lm" not in type(model).__module__, type(model).__module__
        reference = torch.load({str(tmp_path / "reference.pt")!r})
        with torch.no_grad():
            logits = model(reference["ids"]).logits
        print("max_abs_diff", (logits - reference["logits"]).abs().max().item())
        generated = model.generate(reference["ids"], max_new_tokens=4, do_sample=False)
        print("generated", tuple(generated.shape))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "max_abs_diff 0.0" in result.stdout
    assert "generated (2, 13)" in result.stdout
