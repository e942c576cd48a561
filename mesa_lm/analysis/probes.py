"""Linear probes: what can be decoded, by least squares, from each layer's activations at each position.

[P1] uses them for token binding (is `s_{t-1}` decodable at position t after layer 1?), for the target `s_{t+1}`,
and for the preconditioned input `(S S^T + I / lambda)^{-1} s_t`. Probes are fitted on one set of sequences and
scored on another; errors are `1/2 ||target - probe(activation)||^2`, per layer and position.
"""

from __future__ import annotations

import torch


def fit_linear_probe(features: torch.Tensor, targets: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """Least squares with a bias: weights (F + 1, d) minimising `||[features, 1] W - targets||^2 + ridge ||W||^2`."""
    x = torch.cat([features.double(), torch.ones(features.shape[0], 1, dtype=torch.float64)], dim=1)
    gram = x.T @ x + ridge * torch.eye(x.shape[1], dtype=torch.float64)
    return torch.linalg.solve(gram, x.T @ targets.double())


def apply_probe(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return features.double() @ weights[:-1] + weights[-1]


def probe_errors(train_activations: torch.Tensor, train_targets: torch.Tensor, test_activations: torch.Tensor,
                 test_targets: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """Held-out probe error per layer and position.

    Activations (L, B, T, F), targets (B, T, d): one probe per (layer, position), fitted on the train set across
    sequences. Returns (L, T) mean errors on the test set; positions whose target is NaN (undefined) are NaN.
    """
    layers, _, positions, _ = train_activations.shape
    errors = torch.full((layers, positions), float("nan"), dtype=torch.float64)
    for t in range(positions):
        if torch.isnan(train_targets[:, t]).any():
            continue
        for layer in range(layers):
            w = fit_linear_probe(train_activations[layer, :, t], train_targets[:, t], ridge)
            residual = apply_probe(w, test_activations[layer, :, t]) - test_targets[:, t].double()
            errors[layer, t] = 0.5 * residual.pow(2).sum(-1).mean()
    return errors


@torch.no_grad()
def layer_activations(model, inputs: torch.Tensor) -> torch.Tensor:
    """The residual stream before the first and after every layer of a regression model: (L + 1, B, T, hidden)."""
    out = model(inputs=inputs, output_hidden_states=True)
    return torch.stack(out.hidden_states)


def shifted_tokens(states: torch.Tensor, lag: int) -> torch.Tensor:
    """`s_{t - lag}` at every position t (NaN where it does not exist): the token-binding probe target."""
    shifted = torch.full_like(states, float("nan"))
    shifted[:, lag:] = states[:, : states.shape[1] - lag]
    return shifted


def preconditioned_inputs(states: torch.Tensor, lam: float) -> torch.Tensor:
    """`(S_t S_t^T + I / lambda)^{-1} s_t` with `S_t S_t^T = sum_{i<=t} s_i s_i^T` (the current token included)."""
    s = states.double()
    outer = s[..., :, None] * s[..., None, :]
    gram = outer.cumsum(dim=1) + torch.eye(s.shape[-1], dtype=torch.float64) / lam
    return torch.linalg.solve(gram, s[..., None])[..., 0]
