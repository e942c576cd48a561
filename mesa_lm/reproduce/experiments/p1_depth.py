"""Experiment 3 ([P1]): deeper linear Transformers track Prop-2(k) and CompressedAlg-k; probes of what they compute."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ...analysis.construction import compressed_products, model_products, products_forward
from ...analysis.probes import layer_activations, preconditioned_inputs, probe_errors
from ...data.tasks.dynamics import DynamicsTask
from ...evaluation.baselines_dynamics import next_step_error
from ...evaluation.dynamics import sample_states
from ...evaluation.plots import plot_curves
from ..budget import Budget
from ..report import Claim, ExperimentResult, verdict
from .dynamics_common import evaluate
from .p1_linear1 import D, train_linear


def probe_figure(errors: dict[str, torch.Tensor], path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(errors), figsize=(5.2 * len(errors), 4.0), squeeze=False)
    for ax, (name, e) in zip(axes[0], errors.items()):
        for layer in range(e.shape[0]):
            ax.plot(range(1, e.shape[1] + 1), torch.as_tensor(e[layer]).float().numpy(), label=f"after layer {layer}" if layer else "input")
        ax.set_xlabel("position t")
        ax.set_ylabel("held-out probe error")
        ax.set_yscale("log")
        ax.set_title(f"probe target: {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return str(path)


def run(out: Path, budget: Budget, mesa_error: float | None = None) -> ExperimentResult:
    started = time.time()
    depths = budget.pick((1, 2, 4), (1, 2, 4, 6))
    records, compressed, trained_products = {}, {}, {}
    task = DynamicsTask(tokens="constructed", seed=21)
    inputs, states = sample_states(task, budget.eval_sequences, seed=22)
    models = {}
    for k in depths:
        model, _ = train_linear(out, budget, f"linear-{k}", quick_steps=500 if k == 1 else 250)
        models[k] = model
        records[k] = evaluate(model, budget, prop2_steps=(k,))
        products = model_products(model)
        clip = model.config.activation_clip
        trained_products[k] = next_step_error(products_forward(products, inputs, D, clip), states).mean().item()
        compressed[k] = next_step_error(products_forward(compressed_products(products, D), inputs, D, clip),
                                        states).mean().item()
    errors = {k: r["mean_error"]["model"] for k, r in records.items()}
    prop2 = {k: r["mean_error"][f"baseline/prop2_{k}"] for k, r in records.items()}
    mesa_baseline = records[depths[0]]["mean_error"]["baseline/mesa"]
    reference_mesa = mesa_error if mesa_error is not None else mesa_baseline

    first = records[depths[0]]
    panel = {"title": "linear-k vs Prop-2(k)", "x": first["x"], "x_label": first["x_label"],
             "models": {f"linear-{k}": r["curves"]["model"]["error"] for k, r in records.items()},
             "baselines": {**{f"prop2_{k}": r["curves"][f"baseline/prop2_{k}"]["error"] for k, r in records.items()},
                           "mesa": first["curves"]["baseline/mesa"]["error"]}}
    curves = str(plot_curves([panel], out / "figures" / "p1_depth_curves.png", "next-step error", log=True))

    deepest = models[depths[-1]]
    train_inputs, train_states = sample_states(task, max(256, budget.eval_sequences), seed=23)
    acts_train = layer_activations(deepest, train_inputs)
    acts_test = layer_activations(deepest, inputs)
    targets = {
        "target s_(t+1)": (train_states[:, 1:], states[:, 1:]),
        "preconditioned (S S^T + I/lambda)^-1 s_t": (preconditioned_inputs(train_states[:, :-1], 1.0),
                                                     preconditioned_inputs(states[:, :-1], 1.0)),
    }
    probes = {name: probe_errors(acts_train, tr, acts_test, te) for name, (tr, te) in targets.items()}
    probe_path = probe_figure(probes, out / "figures" / "p1_depth_probes.png")
    target_probe = probes["target s_(t+1)"]
    late = target_probe[:, -10:].mean(-1)  # per layer, late positions

    monotone = all(errors[a] >= errors[b] * 0.98 for a, b in zip(depths, depths[1:]))
    claims = [
        Claim("the loss falls with depth k",
              ", ".join(f"linear-{k}: {errors[k]:.4f}" for k in depths),
              verdict(monotone and errors[depths[-1]] < 0.95 * errors[depths[0]],
                      partial=errors[depths[-1]] < 0.95 * errors[depths[0]]),
              {f"linear-{k}": errors[k] for k in depths}),
        Claim("but stays above one mesa layer",
              f"best linear-k {min(errors.values()):.4f} vs mesa {reference_mesa:.4f}",
              verdict(min(errors.values()) > reference_mesa), {"mesa": reference_mesa}),
        Claim("linear-k tracks Prop-2(k)",
              ", ".join(f"k={k}: model {errors[k]:.4f} / Prop-2 {prop2[k]:.4f}" for k in depths),
              verdict(all(abs(errors[k] / prop2[k] - 1) <= 0.15 for k in depths),
                      partial=all(abs(errors[k] / prop2[k] - 1) <= 0.4 for k in depths)),
              {f"prop2_{k}": prop2[k] for k in depths}),
        Claim("CompressedAlg-k keeps the loss of linear-k",
              ", ".join(f"k={k}: {trained_products[k]:.4f} -> {compressed[k]:.4f}" for k in depths),
              verdict(all(compressed[k] <= 1.1 * trained_products[k] for k in depths),
                      partial=all(compressed[k] <= 1.5 * trained_products[k] for k in depths)),
              {f"compressed_{k}": compressed[k] for k in depths}),
        Claim(f"probe errors for the target fall with depth (linear-{depths[-1]})",
              "late-position probe error by layer: " + ", ".join(f"{v:.4f}" for v in late.tolist()),
              verdict(bool(late[-1] < 0.9 * late[0]) and bool((late[1:] <= late[:-1] * 1.02).all()),
                      partial=bool(late[-1] < 0.9 * late[0])),
              {"target_probe_by_layer": late.tolist()}),
    ]
    return ExperimentResult("p1_depth", "3. depth: linear-k, Prop-2(k), CompressedAlg-k, probes", "P1", claims,
                            [curves, probe_path], "", time.time() - started)
