"""Model cards, and a push of model, tokenizer and card to a loopback Hub, loaded back in a fresh process."""

import json
import os
import subprocess
import sys
import textwrap

import torch
from huggingface_hub import ModelCard

from mesa_lm.evaluation.perplexity import run_perplexity
from mesa_lm.hub.card import hub_card

from .hub_server import LoopbackHub


def test_card_carries_metadata_architecture_and_results(lm_dir, text_file, tmp_path):
    result = run_perplexity(str(lm_dir), text_file=str(text_file), window=64, progress=False)
    (tmp_path / "ppl.json").write_text(json.dumps(result))
    hub_card(str(lm_dir), [str(tmp_path / "ppl.json")], repo_id="me/tiny-mesa", output=str(tmp_path / "README.md"))
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-generation"
    assert "mesa-lm" in card.data.tags and card.data.model_name == "me/tiny-mesa"
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert abs(values["perplexity"] - result["perplexity"]) < 1e-3
    assert abs(values["icl_score"] - result["icl_score"]) < 1e-3
    assert "softmax -> mesa" in card.text and "trust_remote_code=True" in card.text


def test_regression_card_from_icl_results(regression_dir, tmp_path):
    from mesa_lm.evaluation.icl_regression import run_icl_regression

    result = run_icl_regression(str(regression_dir), formats=("plain",), pairs=6, num_prompts=50,
                                num_tune_prompts=20, num_resamples=20, progress=False)
    (tmp_path / "icl.json").write_text(json.dumps(result))
    card = hub_card(str(regression_dir), [str(tmp_path / "icl.json")], output=str(tmp_path / "README.md"))
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.pipeline_tag is None and "in-context-regression" in card.data.tags
    assert [r.metric_type for r in card.data.eval_results] == ["normalised_error", "normalised_error"]


def test_push_to_loopback_hub_then_load_with_remote_code_in_a_fresh_process(lm_dir, tmp_path):
    ids = torch.randint(0, 200, (2, 10))
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        reference = AutoModelForCausalLM.from_pretrained(lm_dir).eval()(ids).logits
    torch.save({"ids": ids, "logits": reference}, tmp_path / "reference.pt")
    with LoopbackHub() as hub:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "PYTHONPATH")}
        env.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_loopback_test_token", HF_HOME=str(tmp_path / "hf_home"),
                   HF_MODULES_CACHE=str(tmp_path / "hf_home" / "modules"), OMP_NUM_THREADS="1")
        push = subprocess.run(
            [sys.executable, "-c", "import sys; from mesa_lm.hub.cli import hub_card_main; sys.exit(hub_card_main())",
             str(lm_dir), "--repo_id", "me/tiny-mesa", "--output", str(tmp_path / "card.md"), "--push"],
            env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )
        assert push.returncode == 0, push.stderr[-3000:]
        files = set(hub.state.repos["me/tiny-mesa"])
        assert {"config.json", "model.safetensors", "modeling_mesa.py", "tokenizer.json", "README.md"} <= files
        load = textwrap.dedent(
            f"""
            import sys
            sys.modules["mesa_lm"] = None  # the package must not be needed
            import torch
            from huggingface_hub import ModelCard
            from transformers import AutoModelForCausalLM, AutoTokenizer
            model = AutoModelForCausalLM.from_pretrained("me/tiny-mesa", trust_remote_code=True).eval()
            tokenizer = AutoTokenizer.from_pretrained("me/tiny-mesa")
            card = ModelCard.load("me/tiny-mesa")
            reference = torch.load({str(tmp_path / "reference.pt")!r})
            with torch.no_grad():
                logits = model(reference["ids"]).logits
            print("identical", torch.equal(logits, reference["logits"]), "module", type(model).__module__)
            print("vocab", len(tokenizer), "card", card.data.model_name)
            """
        )
        env["HF_HOME"] = str(tmp_path / "fresh_home")  # nothing cached: everything comes from the server
        env["HF_MODULES_CACHE"] = str(tmp_path / "fresh_home" / "modules")
        loaded = subprocess.run([sys.executable, "-c", load], env=env, capture_output=True, text=True, timeout=300,
                                cwd=tmp_path)
        assert loaded.returncode == 0, loaded.stderr[-3000:]
        assert "identical True" in loaded.stdout and "mesa_lm" not in loaded.stdout.split("module")[1]
        assert "card me/tiny-mesa" in loaded.stdout
        assert not hub.state.unknown, hub.state.unknown
