"""[P2]'s experiment: train the merged one-layer model from each diagonal start on each initial-token distribution.

For every start (one training set, its step size) the three initialisations (a_0, b_0) train together on the same
data; the result records final ab against the closed-form limit c* and the training-set optimum, the off-structure
norm, test error and prediction ratio at position T, and a verdict per claim of science.md section 5.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from . import model, theory
from .process import Start, sample_sequences

INITS: tuple[tuple[float, float], ...] = ((0.1, 0.1), (0.5, 1.5), (2.0, 2.0))

# The authors' step sizes; with the loss summed over t and averaged over sequences they are stable here.
STARTS: tuple[tuple[Start, float], ...] = (
    (Start("gaussian", 0.5), 1e-3),
    (Start("gaussian", 1.0), 1e-4),
    (Start("gaussian", 2.0), 2e-6),
    (Start("sparse", 0.5), 3e-2),
    (Start("sparse", 1.0), 1e-3),
    (Start("sparse", 2.0), 1e-4),
    (Start("ones"), 5e-4),
)


@dataclass
class P2Config:
    """Sizes of one run; the defaults are [P2]'s (d = 5, T = 100, m = 10,000, about 200 steps)."""

    d: int = 5
    T: int = 100
    m: int = 10_000
    m_test: int = 2_000
    steps: int = 200
    seed: int = 0
    tol_ab: float = 0.05  # relative gap of final ab to c* counted as converged
    tol_off: float = 0.05  # off-structure norm / structured norm counted as "stays zero"
    tol_ratio: float = 0.02  # |ratio - 1| counted as recovery

    @classmethod
    def quick(cls) -> P2Config:
        """A CPU-minutes version: fewer sequences; the limit is the same, the training-set optimum noisier."""
        return cls(m=300, m_test=1_000, steps=200, tol_ab=0.1)


def init_name(a0: float, b0: float) -> str:
    return f"a{a0:g}_b{b0:g}"


def verdicts(start: Start, final: dict[str, float], limits: dict[str, float], cfg: P2Config) -> dict[str, bool]:
    """The claims that apply to this start, each True when the measurement supports it."""
    out = {}
    if start.kind != "ones":
        out["ab_converges_to_limit"] = abs(final["ab_gap"]) < cfg.tol_ab
        out["off_structure_stays_zero"] = final["off_rel"] < cfg.tol_off
    else:
        out["off_structure_appears"] = final["off_rel"] > cfg.tol_off
    if start.kind == "sparse":
        out["recovers_next_token"] = abs(final["ratio"] - 1) < cfg.tol_ratio and final["test_error"] < 0.01
    if start.kind == "gaussian":
        out["does_not_recover"] = abs(final["ratio"] - 1) > 10 * cfg.tol_ratio and final["test_error"] > 0.1
        out["ratio_matches_theory"] = abs(final["ratio"] - limits["ratio"]) < 0.05
    return out


def run_start(start: Start, lr: float, cfg: P2Config, out_dir: Path | None = None, device: str = "cpu") -> dict:
    """Train the three initialisations on one start; optionally save their weights to out_dir/weights/.

    Data are drawn on the CPU from `cfg.seed` (the same on every device), then training runs on `device`.
    """
    generator = torch.Generator().manual_seed(cfg.seed)
    x_train = sample_sequences(start, cfg.m, cfg.T, cfg.d, generator)
    x_test = sample_sequences(start, cfg.m_test, cfg.T + 1, cfg.d, generator)
    began = time.perf_counter()
    w_kq, w_pv = (w.to(device) for w in model.init_weights(cfg.d, list(INITS)))
    train_ctx, test_ctx = model.context(x_train.to(device)), model.context(x_test.to(device), first=cfg.T)
    w_kq, w_pv, history = model.train(w_kq, w_pv, train_ctx, test_ctx, lr, cfg.steps)
    w_kq, w_pv = w_kq.cpu(), w_pv.cpu()
    seconds = time.perf_counter() - began
    limits = {
        "ab": theory.ab_limit(start, cfg.d, cfg.T),
        "ratio": theory.ratio_limit(start, cfg.d, cfg.T),
        "test_error": theory.test_error_limit(start, cfg.d, cfg.T),
    }
    ab_fit = theory.ab_fit(x_train)
    structured = (w_kq[:, cfg.d :, : cfg.d].diagonal(dim1=-2, dim2=-1).abs().square().sum(-1)
                  + w_pv[:, :, : cfg.d].diagonal(dim1=-2, dim2=-1).abs().square().sum(-1)).sqrt()  # fmt: skip
    runs = {}
    for k, (a0, b0) in enumerate(INITS):
        last = {key: values[-1][k] for key, values in history.items()}
        final = {
            "ab": last["ab"],
            "ab_gap": (last["ab"] - limits["ab"]) / limits["ab"],
            "ab_gap_to_fit": (last["ab"] - ab_fit) / ab_fit,
            "off": last["off"],
            "off_rel": last["off"] / structured[k].item(),
            "test_error": last["test_error"],
            "ratio": last["ratio"],
            "loss": last["loss"],
            "steps_done": len(history["ab"]) - 1,
        }
        final["verdicts"] = verdicts(start, final, limits, cfg)
        own = {key: [v[k] for v in values] for key, values in history.items()}
        runs[init_name(a0, b0)] = {"final": final, "history": own}
    if out_dir is not None:
        save_weights(Path(out_dir) / "weights" / f"{start.name}.safetensors", w_kq, w_pv, start, lr)
    return {"start": start.name, "lr": lr, "limit": limits, "ab_fit": ab_fit, "seconds": seconds, "runs": runs}


def save_weights(path: Path, w_kq: torch.Tensor, w_pv: torch.Tensor, start: Start, lr: float) -> None:
    """Trained weights as safetensors: real and imaginary parts as float64 tensors, leading dim = INITS order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"W_KQ.real": w_kq.real, "W_KQ.imag": w_kq.imag, "W_PV.real": w_pv.real, "W_PV.imag": w_pv.imag}
    metadata = {"start": start.name, "lr": str(lr), "inits": json.dumps(INITS)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


def run_p2(out_dir: str | Path, quick: bool = True, cfg: P2Config | None = None, device: str | None = None) -> dict:
    """Run every (start, initialisation), write results.json, the figures and the weights to out_dir; return results.

    `device` defaults to CUDA when available: the full run (m = 10,000) is minutes on a GPU, hours on 2 CPU cores.
    """
    from .plots import plot_all  # matplotlib only when figures are made

    cfg = cfg or (P2Config.quick() if quick else P2Config())
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    results = {"config": asdict(cfg), "device": device, "inits": [list(i) for i in INITS], "starts": {}}
    for start, lr in STARTS:
        res = run_start(start, lr, cfg, out, device)
        results["starts"][start.name] = res
        print(f"[p2] {start.name:<13} lr={lr:g}  c*={res['limit']['ab']:.4f}  fit={res['ab_fit']:.4f}  "
              + "  ".join(f"{k}: ab={r['final']['ab']:.4f}" for k, r in res["runs"].items())
              + f"  ({res['seconds']:.0f}s)", flush=True)  # fmt: skip
    results["seconds"] = time.perf_counter() - began
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot_all(results, out)
    return results


def summary_table(results: dict) -> str:
    """A markdown table per start and initialisation: final ab against c* and the training-set optimum, and the rest."""
    lines = [
        "| start | init (a0, b0) | ab | c* (theory) | gap to c* | best c on train set | off-structure (rel.) "
        "| test error (theory) | ratio (theory) | verdicts |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results["starts"].items():
        lim = res["limit"]
        for init, run in res["runs"].items():
            f = run["final"]
            passed = ", ".join(("" if ok else "NOT ") + claim for claim, ok in f["verdicts"].items())
            lines.append(
                f"| {name} | {init[1:].replace('_b', ', ')} | {f['ab']:.4f} | {lim['ab']:.4f} "
                f"| {100 * f['ab_gap']:+.1f}% | {res['ab_fit']:.4f} | {f['off']:.3f} ({f['off_rel']:.3f}) "
                f"| {f['test_error']:.3f} ({lim['test_error']:.3f}) | {f['ratio']:.3f} ({lim['ratio']:.3f}) "
                f"| {passed} |"
            )
    return "\n".join(lines)
