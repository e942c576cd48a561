"""Experiment 7 ([P1] appendix G): language models softmax + {softmax, mesa, linear} at an equal training budget."""

from __future__ import annotations

import math
import time
from pathlib import Path

from ..budget import Budget
from ..report import Claim, ExperimentResult, verdict
from ..runs import train_model


def icl_score(per_position: list[float], early: int, late: int) -> float:
    """Mean loss around a late position minus around an early one (Olsson et al. 2022); negative = learns in context."""
    def around(t: int) -> float:
        window = [v for v in per_position[max(0, t - 2) : t + 3] if v is not None]
        return sum(window) / len(window)

    return around(late) - around(early)


def plot(results: dict, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, r in results.items():
        curve = r["eval_loss_per_position"]
        smooth = [sum(curve[max(0, i - 4) : i + 5]) / len(curve[max(0, i - 4) : i + 5]) for i in range(len(curve))]
        ax.plot(range(1, len(curve) + 1), smooth, label=f"{name} (ppl {math.exp(r['eval_loss']):.1f})")
    ax.set_xlabel("token position in the context")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("language models at an equal budget")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return str(path)


def run(out: Path, budget: Budget, train_file: str | None = None) -> ExperimentResult:
    started = time.time()
    block = budget.pick(128, 256)
    early, late = (block // 10, block - 8)
    groups = {"2-layer attention-only": ("lm-softmax-2", "lm-hybrid-mesa-2", "lm-hybrid-linear-2")}
    if not budget.quick:
        groups["4-layer with MLPs"] = ("lm-softmax-4", "lm-hybrid-mesa-4", "lm-hybrid-linear-4")
    claims, figures = [], []
    for group, presets in groups.items():
        results = {}
        for preset in presets:
            _, results[preset] = train_model(out, preset, preset=preset, block_size=block, train_file=train_file,
                                             max_steps=budget.steps(200, 400), warmup_steps=budget.steps(20, 40),
                                             eval_steps=0, save_steps=0, seed=0)
        ppl = {p: math.exp(r["eval_loss"]) for p, r in results.items()}
        icl = {p: icl_score(r["eval_loss_per_position"], early, late) for p, r in results.items()}
        softmax, mesa, linear = presets
        slug = group.split()[0]
        figures.append(plot(results, out / "figures" / f"language_{slug}.png"))
        numbers = {"perplexity": ppl, "icl_score": icl}
        claims.append(Claim(f"{group}: hybrid-mesa beats hybrid-linear on perplexity and in-context-learning score",
                            f"perplexity mesa {ppl[mesa]:.2f} vs linear {ppl[linear]:.2f}; ICL score (loss at {late} "
                            f"minus at {early}) mesa {icl[mesa]:.3f} vs linear {icl[linear]:.3f}",
                            verdict(ppl[mesa] < ppl[linear] and icl[mesa] < icl[linear],
                                    partial=ppl[mesa] < ppl[linear] or icl[mesa] < icl[linear]), numbers))
        claims.append(Claim(f"{group}: hybrid-mesa about matches all-softmax",
                            f"perplexity mesa {ppl[mesa]:.2f} vs softmax {ppl[softmax]:.2f} "
                            f"({ppl[mesa] / ppl[softmax] - 1:+.1%})",
                            verdict(ppl[mesa] <= 1.05 * ppl[softmax], partial=ppl[mesa] <= 1.15 * ppl[softmax]),
                            numbers))
    corpus = train_file or "the embedded docstring corpus"
    notes = f"Trained on {corpus} with {block}-token blocks; every model gets the same steps, batch and schedule."
    return ExperimentResult("language", "7. language: softmax + {softmax, mesa, linear}", "P1", claims, figures, notes,
                            time.time() - started)
