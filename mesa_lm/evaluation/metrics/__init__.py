"""`evaluate` metrics of mesa-lm, each in `<name>/<name>.py` so that `evaluate.load(path)` finds it offline."""

from __future__ import annotations

from pathlib import Path

METRICS = ("perplexity", "bits_per_byte", "icl_regression_error")


def metric_path(name: str) -> str:
    """The folder to pass to `evaluate.load` for metric `name`."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(METRICS)}")
    return str(Path(__file__).parent / name)


def load_metric(name: str):
    """`evaluate.load` of one of our metrics, kept in memory (no cache files, safe with several processes)."""
    import evaluate

    return evaluate.load(metric_path(name), keep_in_memory=True)
