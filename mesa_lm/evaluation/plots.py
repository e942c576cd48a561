"""Paper-style figures of harness results: models solid, baselines dashed, 90% bootstrap intervals shaded."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

BASELINE_LABELS = {
    "zero": "zero",
    "least_squares": "least squares",
    "ridge": "ridge (tuned)",
    "gd_1": "GD-1",
    "averaging": "averaging",
    "seen_pairs_least_squares": "LSQ on seen pairs",
    "lsq": "LSQ (ridge, tuned)",
    "mesa": "mesa layer",
    "softmax_kernel": "softmax kernel reg.",
}


def baseline_label(name: str) -> str:
    if name.startswith("prop2_"):
        return f"Prop-2 ({name.split('_')[1]})"
    if name.endswith("_nearest_neighbours"):
        return f"{name.split('_')[0]}-nearest neighbours"
    return BASELINE_LABELS.get(name, name)


def _style(ax, xlabel: str, ylabel: str, title: str, log: bool = False) -> None:
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.set_title(title, fontsize=12)
    if log:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=10)


# Baselines: muted colours and varied dashes, so that curves which coincide (LSQ and the mesa layer, GD-1 and
# Prop-2(1)) stay distinguishable; models: solid lines in strong colours.
BASELINE_COLORS = ("#7f7f7f", "#8c564b", "#17becf", "#bcbd22", "#9467bd", "#e377c2", "#1a55a0", "#6b8e23", "#d2691e")
DASHES = ("--", (0, (5, 2, 1, 2)), (0, (1, 1.5)), (0, (8, 3)), (0, (3, 1, 1, 1, 1, 1)))
MODEL_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#000000", "#9edae5")


def _line(ax, x, curve: dict, label: str, color, dash) -> None:
    ax.plot(x, curve["mean"], label=label, color=color, linestyle=dash or "-", linewidth=1.5 if dash else 2.4)
    ax.fill_between(x, curve["low"], curve["high"], color=color, alpha=0.15 if dash else 0.25, linewidth=0)


def plot_curves(
    panels: list[dict],
    path: str | Path,
    ylabel: str,
    log: bool = False,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """One subplot per panel (two per row); a panel is `{"title", "x", "x_label", "models": {label: curve},
    "baselines": {name: curve}}` with curves `{"mean", "low", "high"}`. One legend, right of the subplots."""
    columns = min(len(panels), 2)
    rows = -(-len(panels) // columns)
    legend_width = 2.4
    width = 5.0 * columns + legend_width
    fig, axes = plt.subplots(rows, columns, figsize=(width, 3.9 * rows), squeeze=False, sharey=True)
    handles = {}
    for index, panel in enumerate(panels):
        ax = axes[index // columns][index % columns]
        x = panel["x"]
        for i, (name, curve) in enumerate(panel.get("baselines", {}).items()):
            _line(ax, x, curve, baseline_label(name), BASELINE_COLORS[i % len(BASELINE_COLORS)], DASHES[i % len(DASHES)])
        for i, (label, curve) in enumerate(panel["models"].items()):
            _line(ax, x, curve, label, MODEL_COLORS[i % len(MODEL_COLORS)], None)
        _style(ax, panel["x_label"], ylabel if index % columns == 0 else "", panel["title"], log)
        if ylim is not None:
            ax.set_ylim(*ylim)
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    fig.tight_layout(rect=(0, 0, 1 - legend_width / width, 1))
    title = "solid: models\ndashed: baselines" if any(p.get("baselines") for p in panels) else None
    fig.legend(handles.values(), handles.keys(), loc="center left", bbox_to_anchor=(1 - legend_width / width, 0.5),
               fontsize=9, frameon=False, title=title, title_fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def smooth(values: list[float | None], width: int) -> list[float | None]:
    """Centred moving average, for display of noisy per-position losses (None stays None)."""
    out = []
    for i in range(len(values)):
        window = [v for v in values[max(0, i - width // 2) : i + width // 2 + 1] if v is not None]
        out.append(sum(window) / len(window) if window and values[i] is not None else None)
    return out
