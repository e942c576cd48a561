"""Save models under one transformers version, then load and generate under another: the same tokens and logits.

    ENV_A/bin/python scripts/cross_version.py save  DIR             # four mixes, their logits and greedy tokens
    ENV_B/bin/python scripts/cross_version.py check DIR             # loaded through mesa_lm
    ENV_B/bin/python scripts/cross_version.py check DIR --remote    # loaded as remote code, mesa_lm unimportable

`check` exits 1 (and says which mix and what differs) unless every mix generates the saved tokens and its logits
match the saved ones to 1e-5 of their scale. Used by scripts/compat_matrix.sh across the matrix's environments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

MIXES = {
    "all-softmax": ["softmax", "softmax"],
    "all-linear": ["linear", "linear"],
    "all-mesa": ["mesa", "mesa"],
    "softmax+linear+mesa": ["softmax", "linear", "mesa"],
}
PROMPT_LEN, NEW_TOKENS, VOCAB = 7, 12, 101


def prompt():
    import torch

    return torch.arange(2 * PROMPT_LEN).reshape(2, PROMPT_LEN) * 7 % VOCAB


def outputs(model) -> dict:
    import torch

    ids = prompt()
    with torch.no_grad():
        logits = model(ids).logits
    tokens = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
    return {"logits": logits.flatten().tolist(), "tokens": tokens.tolist()}


def save(folder: str) -> None:
    import torch
    import transformers

    from mesa_lm import MesaConfig, MesaForCausalLM

    for name, mixers in MIXES.items():
        torch.manual_seed(0)
        config = MesaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_attention_heads=2,
            mixer_types=mixers,
            mesa_gate="data",
            mesa_lambda_type="diagonal",
            linear_gate=True,
            chunk_size=4,
            initializer_range=0.3,
        )
        model = MesaForCausalLM(config).eval()
        path = os.path.join(folder, name)
        model.save_pretrained(path)
        record = {"transformers": transformers.__version__, **outputs(model)}
        with open(os.path.join(path, "expected.json"), "w", encoding="utf-8") as f:
            json.dump(record, f)
    print(f"saved {len(MIXES)} models under transformers {transformers.__version__} in {folder}")


def check(folder: str, remote: bool) -> int:
    if remote:
        sys.modules["mesa_lm"] = None  # any import of mesa_lm now fails: only the folder's code can load the model
    else:
        import mesa_lm  # noqa: F401  (registers the Auto classes)
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    failures = []
    for name in MIXES:
        path = os.path.join(folder, name)
        with open(os.path.join(path, "expected.json"), encoding="utf-8") as f:
            expected = json.load(f)
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=remote).eval()
        got = outputs(model)
        want_logits, got_logits = torch.tensor(expected["logits"]), torch.tensor(got["logits"])
        diff = (got_logits - want_logits).abs().max().item()
        if got["tokens"] != expected["tokens"]:
            failures.append(f"{name}: generated tokens differ from those saved under {expected['transformers']}")
        elif diff > 1e-5 * want_logits.abs().max().item():
            failures.append(f"{name}: logits differ by {diff:.3g} from those saved under {expected['transformers']}")
    how = "remote code" if remote else "mesa_lm"
    for line in failures:
        print(f"FAIL ({how}, transformers {transformers.__version__}) {line}")
    if not failures:
        print(f"ok: {len(MIXES)} models load ({how}) and generate identically under transformers {transformers.__version__}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    from transformers.utils import logging

    logging.disable_progress_bar()  # one line per check is the output
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["save", "check"], help="save the models, or check a saved folder")
    p.add_argument("folder", help="folder holding one sub-folder per mix")
    p.add_argument("--remote", action="store_true", help="check: load with trust_remote_code, mesa_lm unimportable")
    a = p.parse_args(argv)
    if a.action == "save":
        save(a.folder)
        return 0
    return check(a.folder, a.remote)


if __name__ == "__main__":
    sys.exit(main())
