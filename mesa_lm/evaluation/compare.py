"""Compare variants: run harnesses over several checkpoints, then write one table (Markdown and JSON) per harness and
one figure per harness, baselines beside the models."""

from __future__ import annotations

import json
from pathlib import Path

from .loading import model_kind
from .plots import plot_curves

HARNESSES = ("perplexity", "icl_regression", "dynamics")
NEEDS = {"perplexity": "causal_lm", "icl_regression": "regression", "dynamics": "regression"}


def run_harness(harness: str, checkpoint: str, options: dict) -> dict:
    if harness == "perplexity":
        from .perplexity import run_perplexity

        return run_perplexity(checkpoint, **options)
    if harness == "icl_regression":
        from .icl_regression import run_icl_regression

        return run_icl_regression(checkpoint, **options)
    if harness == "dynamics":
        from .dynamics import run_dynamics

        return run_dynamics(checkpoint, **options)
    raise ValueError(f"unknown harness {harness!r}; allowed: {', '.join(HARNESSES)}")


def _cell(curve: dict, i: int) -> str:
    return f"{curve['mean'][i]:.3f} [{curve['low'][i]:.3f}, {curve['high'][i]:.3f}]"


def _picks(x: list[int], wanted: list[int]) -> list[int]:
    """Indices into `x` of the wanted x values that exist, in order, without repeats."""
    index = {value: i for i, value in enumerate(x)}
    return list(dict.fromkeys(index[w] for w in wanted if w in index))


def _spec_key(result: dict) -> tuple:
    keys = ("task", "dim", "pairs", "noise_std", "distribution", "dynamics", "state_dim", "seq_len")
    return tuple(result.get(k) for k in keys)


def _regression_table(harness: str, results: dict[str, dict]) -> dict:
    """Rows of models (per prompt format) and of baselines (once per distinct prompt setting)."""
    first = next(iter(results.values()))
    x = first["x"]
    if harness == "icl_regression":
        metric, d = "normalised", first["dim"]
        picks = _picks(x, [1, 2, d // 2, d, 2 * d, x[-1]])
        columns = [f"k={x[i]}" for i in picks]
        note = "error normalised by the zero predictor (zero = 1) at k in-context examples, mean [90% bootstrap CI]"
    else:
        metric = "error"
        picks = _picks(x, [1, 2, 5, 10, 20, x[-1]])
        columns = [f"t={x[i]}" for i in picks]
        note = "next-step error 1/2 ||s_{t+1} - prediction||^2 at position t, mean [90% bootstrap CI]"
    rows, baseline_rows, seen_specs = [], [], {}
    for name, result in results.items():
        for key, curves in result["curves"].items():
            if key.startswith("model"):
                label = name if key == "model" else f"{name} ({key.split('/', 1)[1]})"
                rows.append({"name": label, "kind": "model", "values": _row_values(curves[metric], picks, columns)})
        spec = _spec_key(result)
        if spec not in seen_specs:
            seen_specs[spec] = name
            suffix = "" if len(seen_specs) == 1 else f" [prompts of {name}]"
            for key, curves in result["curves"].items():
                if key.startswith("baseline/") or key == "zero":
                    label = key.split("/", 1)[-1] + suffix
                    baseline_rows.append(
                        {"name": label, "kind": "baseline", "values": _row_values(curves[metric], picks, columns)}
                    )
    return {"columns": columns + ["mean"], "rows": rows + baseline_rows, "note": note}


def _row_values(curve: dict, picks: list[int], columns: list[str]) -> dict:
    values = {column: _cell(curve, i) for column, i in zip(columns, picks)}
    values["mean"] = f"{sum(curve['mean']) / len(curve['mean']):.3f}"
    return values


def _perplexity_table(results: dict[str, dict]) -> dict:
    rows = []
    for name, r in results.items():
        early, late = r["icl_positions"]
        rows.append(
            {
                "name": name,
                "kind": "model",
                "values": {
                    "perplexity": f"{r['perplexity']:.2f}",
                    "mean NLL": f"{r['mean_nll']:.4f}",
                    "ICL score": "n/a" if r["icl_score"] is None
                    else f"{r['icl_score']:.3f} [{r['icl_score_interval'][0]:.3f}, {r['icl_score_interval'][1]:.3f}]",
                    "ICL positions": f"{late} - {early}",
                    "tokens scored": str(r["tokens_scored"]),
                    "window/stride": f"{r['window']}/{r['stride']}",
                },
            }
        )
    columns = ["perplexity", "mean NLL", "ICL score", "ICL positions", "tokens scored", "window/stride"]
    note = ("ICL score = mean loss at the late position minus at the early one (negative: context helps), "
            "[90% bootstrap CI over windows]; perplexities of models with different tokenizers are not comparable")
    return {"columns": columns, "rows": rows, "note": note}


def build_tables(results: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """One table per harness from `results[harness][variant]`."""
    return {
        harness: _perplexity_table(by_model) if harness == "perplexity" else _regression_table(harness, by_model)
        for harness, by_model in results.items()
        if by_model
    }


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


def _smooth(values: list[float | None], width: int) -> list[float | None]:
    """Centred moving average, for display of noisy per-position losses."""
    out = []
    for i in range(len(values)):
        window = [v for v in values[max(0, i - width // 2) : i + width // 2 + 1] if v is not None]
        out.append(sum(window) / len(window) if window and values[i] is not None else None)
    return out


def figure(harness: str, by_model: dict[str, dict], path: str | Path) -> Path:
    """The figure of one harness over the variants in `by_model` (baselines from the first result)."""
    first = next(iter(by_model.values()))
    if harness == "icl_regression":
        baselines = {
            k.split("/", 1)[-1]: c["normalised"] for k, c in first["curves"].items() if k.startswith("baseline/") or k == "zero"
        }
        panels = [
            {
                "title": f"{first['task']} regression, d={first['dim']}, format: {fmt}",
                "x": first["x"],
                "x_label": "in-context examples",
                "models": {n: r["curves"][f"model/{fmt}"]["normalised"] for n, r in by_model.items() if f"model/{fmt}" in r["curves"]},
                "baselines": baselines,
            }
            for fmt in first["formats"]
        ]
        return plot_curves(panels, path, "error / zero-predictor error", ylim=(0, 1.6))
    if harness == "dynamics":
        panel = {
            "title": f"next-step error, {first['dynamics'].replace('_', ' ')} dynamics, d={first['state_dim']}",
            "x": first["x"],
            "x_label": "position t (states seen)",
            "models": {name: r["curves"]["model"]["error"] for name, r in by_model.items()},
            "baselines": {k.split("/", 1)[1]: c["error"] for k, c in first["curves"].items() if k.startswith("baseline/")},
        }
        return plot_curves([panel], path, "1/2 ||error||^2 (log scale)", log=True)
    width = max(1, first["window"] // 32)
    length = len(first["loss_per_position"])
    models = {}
    for name, r in by_model.items():
        low, high = r["loss_per_position_interval"]
        models[name] = {"mean": _smooth(r["loss_per_position"], width), "low": _smooth(low, width),
                        "high": _smooth(high, width)}
    start = max(next(i for i, v in enumerate(m["mean"]) if v is not None) for m in models.values())
    for m in models.values():
        for key in ("mean", "low", "high"):
            m[key] = m[key][start:length]
    panel = {
        "title": f"loss per position (moving average over {width})",
        "x": list(range(start, length)),
        "x_label": "token position in window (tokens of context)",
        "models": models,
    }
    return plot_curves([panel], path, "next-token NLL (nats)")


FIGURE_NAMES = {"icl_regression": "icl_regression.png", "dynamics": "dynamics.png", "perplexity": "perplexity_per_position.png"}


def make_figures(results: dict[str, dict[str, dict]], output_dir: Path) -> list[str]:
    return [str(figure(h, by_model, output_dir / FIGURE_NAMES[h])) for h, by_model in results.items() if by_model]


def compare(
    models: dict[str, str],
    harnesses: tuple[str, ...],
    output_dir: str | Path,
    options: dict[str, dict] | None = None,
) -> dict:
    """Run each harness that applies on each checkpoint, save every result JSON, the tables and the figures.

    `models` maps a variant name to a checkpoint folder; `options[harness]` are keyword options of that harness.
    Returns the comparison record (also written as `comparison.json`; `comparison.md` holds the tables).
    """
    from tqdm.auto import tqdm

    options = options or {}
    for harness in harnesses:
        if harness not in HARNESSES:
            raise ValueError(f"unknown harness {harness!r}; allowed: {', '.join(HARNESSES)}")
    if len(models) < 1:
        raise ValueError("no checkpoints to compare")
    output_dir = Path(output_dir)
    (output_dir / "results").mkdir(parents=True, exist_ok=True)
    kinds = {name: model_kind(path) for name, path in models.items()}  # fails early on a bad folder
    results: dict[str, dict[str, dict]] = {h: {} for h in harnesses}
    skipped, files = [], []
    jobs = [(h, name) for h in harnesses for name in models]
    for harness, name in tqdm(jobs, desc="compare"):
        if kinds[name] != NEEDS[harness]:
            skipped.append(f"{harness} on {name} ({kinds[name]} checkpoint)")
            continue
        result = run_harness(harness, models[name], dict(options.get(harness, {})))
        results[harness][name] = result
        path = output_dir / "results" / f"{name}.{harness}.json"
        path.write_text(json.dumps(result, indent=1))
        files.append(str(path))
    tables = build_tables(results)
    figures = make_figures(results, output_dir)
    record = {"models": models, "harnesses": list(harnesses), "tables": tables, "figures": figures,
              "results": files, "skipped": skipped}
    (output_dir / "comparison.json").write_text(json.dumps(record, indent=1))
    (output_dir / "comparison.md").write_text(markdown(tables, skipped))
    return record
