"""Compare variants: run every registered harness that applies over several checkpoints, then write one table
(Markdown and JSON) and one figure per harness, baselines beside the models. Nothing here names a harness: they come
from `mesa_lm.evaluation.harnesses`."""

from __future__ import annotations

import json
from pathlib import Path

from .harnesses import get_harness, registered_harnesses
from .loading import model_kind


def markdown(tables: dict[str, dict], skipped: list[str]) -> str:
    lines = ["# Variant comparison", ""]
    for harness, table in tables.items():
        lines += [f"## {harness}", "", table["note"], ""]
        lines.append("| variant | " + " | ".join(table["columns"]) + " |")
        lines.append("|" + " --- |" * (len(table["columns"]) + 1))
        for row in table["rows"]:
            name = row["name"] if row["kind"] == "model" else f"*{row['name']}* (baseline)"
            lines.append(f"| {name} | " + " | ".join(row["values"].get(c, "") for c in table["columns"]) + " |")
        lines.append("")
    if skipped:
        lines += ["Not run (harness does not apply to the checkpoint):", ""] + [f"- {s}" for s in skipped] + [""]
    return "\n".join(lines)


def compare(models: dict[str, str], harnesses: tuple[str, ...] | None, output_dir: str | Path,
            options: dict | None = None, progress: bool = False) -> dict:
    """Run each harness that applies on each checkpoint; save every result JSON, the tables and the figures.

    `models` maps a variant name to a checkpoint folder; `harnesses` are registered names (None: all);
    `options[harness]` is that harness's `Options` instance (default: its defaults). Returns the comparison record
    (also written as `comparison.json`; `comparison.md` holds the tables).
    """
    from tqdm.auto import tqdm

    from ..data.tasks import load_task

    chosen = [get_harness(h) for h in (harnesses or registered_harnesses())]  # an unknown name fails here
    options = options or {}
    if len(models) < 1:
        raise ValueError("no checkpoints to compare")
    output_dir = Path(output_dir)
    (output_dir / "results").mkdir(parents=True, exist_ok=True)
    kinds = {name: model_kind(path) for name, path in models.items()}  # fails early on a bad folder
    tasks = {name: load_task(path) for name, path in models.items()}
    results: dict[str, dict[str, dict]] = {h.name: {} for h in chosen}
    skipped, files = [], []
    for harness, name in tqdm([(h, n) for h in chosen for n in models], desc="compare", disable=not progress):
        if not harness.applies_to(kinds[name], tasks[name], models[name]):
            skipped.append(f"{harness.name} on {name} ({kinds[name]} checkpoint)")
            continue
        result = harness.run(models[name], options.get(harness.name) or harness.Options(), progress=False)
        results[harness.name][name] = result
        path = output_dir / "results" / f"{name}.{harness.name}.json"
        path.write_text(json.dumps(result, indent=1))
        files.append(str(path))
    tables, figures = {}, []
    for harness in chosen:
        if results[harness.name]:
            tables[harness.name] = harness.table(results[harness.name])
            figure_file = output_dir / (harness.figure_file or f"{harness.name}.png")
            figure = harness.figure(results[harness.name], figure_file)
            if figure is not None:
                figures.append(str(figure))
    record = {"models": models, "harnesses": [h.name for h in chosen], "tables": tables, "figures": figures,
              "results": files, "skipped": skipped}
    (output_dir / "comparison.json").write_text(json.dumps(record, indent=1))
    (output_dir / "comparison.md").write_text(markdown(tables, skipped))
    return record
