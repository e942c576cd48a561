"""Tables of error curves with bootstrap intervals, shared by the regression harnesses' `table`: one row per model
curve, baseline rows once per distinct prompt setting."""

from __future__ import annotations


def cell(curve: dict, i: int) -> str:
    return f"{curve['mean'][i]:.3f} [{curve['low'][i]:.3f}, {curve['high'][i]:.3f}]"


def picks(x: list[int], wanted: list[int]) -> list[int]:
    """Indices into `x` of the wanted x values that exist, in order, without repeats."""
    index = {value: i for i, value in enumerate(x)}
    return list(dict.fromkeys(index[w] for w in wanted if w in index))


def row_values(curve: dict, picked: list[int], columns: list[str]) -> dict:
    values = {column: cell(curve, i) for column, i in zip(columns, picked)}
    values["mean"] = f"{sum(curve['mean']) / len(curve['mean']):.3f}"
    return values


def curve_table(results: dict[str, dict], metric: str, picked: list[int], columns: list[str], note: str,
                spec_keys: tuple[str, ...]) -> dict:
    """Rows of models (each `model...` curve) and of baselines (`baseline/...` and `zero`, once per distinct
    setting `spec_keys` of the results, labelled with the first variant that had it)."""
    rows, baseline_rows, seen = [], [], {}
    for name, result in results.items():
        for key, curves in result["curves"].items():
            if key.startswith("model"):
                label = name if key == "model" else f"{name} ({key.split('/', 1)[1]})"
                rows.append({"name": label, "kind": "model", "values": row_values(curves[metric], picked, columns)})
        spec = tuple(result.get(k) for k in spec_keys)
        if spec not in seen:
            seen[spec] = name
            suffix = "" if len(seen) == 1 else f" [prompts of {name}]"
            for key, curves in result["curves"].items():
                if key.startswith("baseline/") or key == "zero":
                    baseline_rows.append({"name": key.split("/", 1)[-1] + suffix, "kind": "baseline",
                                          "values": row_values(curves[metric], picked, columns)})
    return {"columns": columns + ["mean"], "rows": rows + baseline_rows, "note": note}
