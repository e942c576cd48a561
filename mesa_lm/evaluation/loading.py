"""Loading checkpoints for the harnesses, with one-line errors when the folder holds the wrong kind of model."""

from __future__ import annotations

from pathlib import Path

REGRESSION_CLASS = "MesaForCausalRegression"


def read_config(path: str):
    from transformers import AutoConfig

    import mesa_lm  # noqa: F401  registers model_type "mesa" with the Auto classes

    if not (Path(path) / "config.json").is_file():
        raise ValueError(f"checkpoint {path!r} is not a model folder (no config.json in it)")
    if (Path(path) / "manifest.json").is_file():  # written by train_lm.py: a changed or truncated file is refused
        from ..training.checkpoints import verify_folder

        reason = verify_folder(Path(path), exhaustive=False)
        if reason is not None:
            raise ValueError(f"checkpoint {path!r} is corrupt: {reason}")
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"checkpoint {path!r} has a config that cannot be read: {str(error).splitlines()[0]}")


def is_regression_config(config) -> bool:
    """A mesa model with real-valued inputs (trained on a synthetic task), not a language model."""
    return getattr(config, "model_type", None) == "mesa" and getattr(config, "input_dim", None) is not None and (
        not config.vocab_size or REGRESSION_CLASS in (config.architectures or [])
    )


def model_kind(path: str) -> str:
    """`regression` for a MesaForCausalRegression checkpoint, else `causal_lm`."""
    return "regression" if is_regression_config(read_config(path)) else "causal_lm"


def load_causal_lm(path: str, harness: str = "perplexity"):
    """Any causal LM `AutoModelForCausalLM` loads (ours or a stock transformers model), in eval mode."""
    from transformers import AutoModelForCausalLM

    config = read_config(path)
    if is_regression_config(config):
        raise ValueError(
            f"checkpoint {path!r} is a {REGRESSION_CLASS} (real-valued inputs); the {harness} harness needs a causal "
            "language model"
        )
    try:
        return AutoModelForCausalLM.from_pretrained(path).eval()
    except ValueError as error:
        raise ValueError(f"checkpoint {path!r} is not a causal language model: {str(error).splitlines()[0]}")


def load_regression_model(path: str, harness: str):
    """A `MesaForCausalRegression` in eval mode; any other checkpoint is an error naming what it is."""
    from ..models.mesa import MesaForCausalRegression

    config = read_config(path)
    if not is_regression_config(config):
        kind = (config.architectures or [type(config).__name__])[0]
        raise ValueError(
            f"checkpoint {path!r} is a {kind} (a language model); the {harness} harness needs a {REGRESSION_CLASS} "
            "trained on a synthetic task"
        )
    return MesaForCausalRegression.from_pretrained(path).eval()


def token_layout(config) -> str:
    """`constructed` for [P1]'s linear-attention models (inputs `(0, s_t, s_t, s_{t-1})` read in by identity and the
    prediction sliced from the residual stream), else `plain`."""
    constructed = (
        config.read_in == "identity" and config.read_out == "slice" and config.input_dim == 4 * config.output_dim
    )
    return "constructed" if constructed else "plain"


def max_positions(config) -> int | None:
    """The longest sequence the model allows, from its config (`max_position_embeddings` or GPT-2's `n_positions`)."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def describe_model(model, path: str) -> dict:
    """Name, path, class and (for mesa models) the layer mix, for result files and tables."""
    config = model.config
    info = {
        "path": str(path),
        "class": type(model).__name__,
        "model_type": config.model_type,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if hasattr(config, "mixer_types"):
        info["mixer_types"] = list(config.mixer_types)
    return info

