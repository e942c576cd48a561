"""The dataset of the `text_file` lm-evaluation-harness task: one document, the whole file, read as mesa-lm's
perplexity harness reads `--text_file` (UTF-8, undecodable bytes replaced)."""

from pathlib import Path


def load(text_file: str | None = None, **metadata) -> dict:
    """`{"test": Dataset}` of one row `{"text": <the file>}`; lm_eval passes `--metadata` here as keywords."""
    import datasets

    if not text_file:
        raise ValueError("the text_file task needs the file: --metadata '{\"text_file\": \"PATH\"}'")
    path = Path(text_file)
    if not path.is_file():
        raise ValueError(f"text_file {text_file!r} does not exist or is not a file")
    return {"test": datasets.Dataset.from_list([{"text": path.read_text(encoding="utf-8", errors="replace")}])}
