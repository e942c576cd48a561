"""Figures of the [P2] experiment, drawn from the results dict of `run_p2` (and the saved weights for heat maps).

fig_ab.png: ab against steps, one panel per start, one curve per initialisation, theory c* dashed;
fig_test_error.png, fig_ratio.png, fig_off.png: test error, prediction ratio at t = T and off-structure norm;
fig_ones_weights.png: heat maps of the trained W_KQ and W_PV (real part and modulus) for the all-ones start.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

COLORS = ("tab:blue", "tab:orange", "tab:green")


def _curves(results: dict, out: Path, key: str, ylabel: str, name: str, limit_key: str | None, log: bool) -> None:
    """One panel per start (Gaussian row, sparse row, all-ones last), a curve per initialisation."""
    starts = list(results["starts"].values())
    fig, axes = plt.subplots(2, 4, figsize=(16, 7), constrained_layout=True)
    slots = {"gaussian": 0, "sparse": 1}
    count = {0: 0, 1: 0}
    for res in starts:
        kind = res["start"].split("-")[0]
        row = slots.get(kind, 0)
        ax = axes[row, 3] if kind == "ones" else axes[row, count[row]]
        if kind != "ones":
            count[row] += 1
        for color, (init, run) in zip(COLORS, res["runs"].items()):
            ax.plot(run["history"][key], color=color, label=f"init {init.replace('_', ', ')}")
        if limit_key is not None:
            ax.axhline(res["limit"][limit_key], color="black", ls="--", lw=1.2, label="theory (population)")
        if key == "ab":
            ax.axhline(res["ab_fit"], color="grey", ls=":", lw=1.2, label="best c on training set")
        if key == "ratio":
            ax.axhline(1.0, color="tab:red", ls=":", lw=1.0, label="recovery (ratio 1)")
            ax.set_ylim(0, 1.6)  # the (2, 2) start begins far above; the end is what matters
        ax.set_title(f"{res['start']}  (lr {res['lr']:g})")
        ax.set_xlabel("GD step")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    axes[1, 3].axis("off")
    axes[1, 3].legend(handles, labels, loc="center", fontsize=11)
    m, T = results["config"]["m"], results["config"]["T"]
    fig.suptitle(f"[P2] {ylabel} (d={results['config']['d']}, T={T}, m={m})", fontsize=14)
    fig.savefig(out / name, dpi=110)
    plt.close(fig)


def plot_heatmaps(weights_file: Path, inits: list, out_file: Path) -> None:
    """Re (linear colours) and |.| (log colours, so that small off-structure entries show) of the trained weights."""
    w = load_file(str(weights_file))
    kq = w["W_KQ.real"] + 1j * w["W_KQ.imag"]
    pv = w["W_PV.real"] + 1j * w["W_PV.imag"]
    fig, axes = plt.subplots(len(inits), 4, figsize=(15, 3.6 * len(inits)), constrained_layout=True)
    for k, (a0, b0) in enumerate(inits):
        panels = (("Re W_KQ", kq[k].real), ("|W_KQ|", kq[k].abs()), ("Re W_PV", pv[k].real), ("|W_PV|", pv[k].abs()))
        for ax, (title, mat) in zip(axes[k], panels):
            vmax = mat.abs().max().item()
            if title.startswith("Re"):
                im = ax.imshow(mat.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            else:
                im = ax.imshow(mat.clamp_min(vmax * 1e-4).numpy(), cmap="viridis", norm=LogNorm(vmax * 1e-4, vmax))
            ax.set_title(f"{title}  (init a0={a0:g}, b0={b0:g})", fontsize=10)
            ax.set_xlabel("column")
            ax.set_ylabel("row")
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"[P2] trained weights, start {weights_file.stem}: W_KQ[d:, :d] = a I and W_PV[:, :d] = b I at init")
    fig.savefig(out_file, dpi=110)
    plt.close(fig)


def plot_all(results: dict, out_dir: str | Path) -> list[Path]:
    """Write every figure to out_dir; return their paths."""
    out = Path(out_dir)
    _curves(results, out, "ab", "ab = mean_j Re a_j Re b_j", "fig_ab.png", "ab", log=True)
    _curves(results, out, "test_error", "test error at t = T (zero predictor = 1)", "fig_test_error.png",
            "test_error", log=True)  # fmt: skip
    _curves(results, out, "ratio", "prediction ratio Re<x, yhat>/|x|^2 at t = T", "fig_ratio.png", "ratio", log=False)
    _curves(results, out, "off", "off-structure norm", "fig_off.png", None, log=True)
    plot_heatmaps(out / "weights" / "ones.safetensors", results["inits"], out / "fig_ones_weights.png")
    names = ("fig_ab.png", "fig_test_error.png", "fig_ratio.png", "fig_off.png", "fig_ones_weights.png")
    return [out / n for n in names]
