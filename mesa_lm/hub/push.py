"""Push a model folder's model, tokenizer and card to the Hub (or any endpoint in `HF_ENDPOINT`)."""

from __future__ import annotations

from pathlib import Path


def push_to_hub(model_dir: str, repo_id: str, token: str | None = None, private: bool = False,
                commit_message: str = "Upload mesa-lm model") -> str:
    """Upload the model (weights, config and its code for `trust_remote_code`), the tokenizer if the folder has one,
    and the card (`README.md`, written by `hub_card` if missing). Returns the repository URL."""
    from huggingface_hub import HfApi, ModelCard
    from transformers import AutoTokenizer

    from ..evaluation.loading import load_causal_lm, load_regression_model, model_kind
    from .card import hub_card

    folder = Path(model_dir)
    kind = model_kind(model_dir)
    model = load_regression_model(model_dir, "push") if kind == "regression" else load_causal_lm(model_dir, "push")
    card_path = folder / "README.md"
    card = ModelCard.load(card_path) if card_path.is_file() else hub_card(model_dir, repo_id=repo_id)
    url = HfApi(token=token).create_repo(repo_id, private=private, exist_ok=True)
    model.push_to_hub(repo_id, token=token, commit_message=commit_message)
    if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
        AutoTokenizer.from_pretrained(model_dir).push_to_hub(repo_id, token=token, commit_message="Upload tokenizer")
    card.push_to_hub(repo_id, token=token, commit_message="Upload model card")
    return str(url)
