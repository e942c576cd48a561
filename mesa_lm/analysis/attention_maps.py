"""Attention maps of a trained model (softmax, linear and mesa layers), and how much weight goes to the current and
the previous token.

Softmax rows are distributions. Linear and mesa maps are the exact causal weights `A[t, s]` with `o_t = sum_s
A[t, s] v_s` (`(q_t . k_s)` or `beta_s (x_t . k_s)` with `x_t = (H_t + Lambda)^{-1} q_t`, times the forget gates
in between): they can be negative and their rows need not sum to 1.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def attention_maps(model, layer: int = 0, **inputs) -> torch.Tensor:
    """Mean attention weights over the batch of layer `layer` (any mixer): (H, T, T), rows are query positions."""
    out = model(**inputs, output_attentions=True)
    weights = out.attentions[layer]
    if weights is None:
        raise ValueError(f"layer {layer} returned no attention weights")
    return weights.float().mean(0)


def weight_on_offsets(maps: torch.Tensor, max_offset: int = 3) -> torch.Tensor:
    """Mean weight that a query puts on the token `k` positions back, for `k = 0..max_offset`: (H, max_offset + 1).

    [P1] finds the first softmax layer attending to the current (k = 0) and the previous (k = 1) token. For linear and
    mesa maps the weights are signed: compare magnitudes with `weight_on_offsets(maps.abs())`.
    """
    heads, length, _ = maps.shape
    rows = []
    for k in range(max_offset + 1):
        diagonal = torch.diagonal(maps, offset=-k, dim1=-2, dim2=-1)  # (H, T - k)
        rows.append(diagonal[:, max(0, max_offset - k) :].mean(-1))  # same query positions for every k
    return torch.stack(rows, dim=1)


def plot_attention_maps(maps: torch.Tensor, path: str | None = None, title: str = ""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = maps.shape[0]
    # Softmax weights: sequential colours from 0. Signed (linear, mesa) weights: a diverging map centred on 0.
    low = float(maps.min())
    if low >= 0:
        style = dict(cmap="viridis", vmin=0)
    else:
        bound = max(-low, float(maps.max()))
        style = dict(cmap="RdBu_r", vmin=-bound, vmax=bound)
    fig, axes = plt.subplots(1, heads, figsize=(3.3 * heads, 3.4), squeeze=False)
    for h in range(heads):
        image = axes[0, h].imshow(torch.as_tensor(maps[h]).float().numpy(), **style)
        axes[0, h].set_title(f"head {h + 1}")
        axes[0, h].set_xlabel("key position")
        axes[0, h].set_ylabel("query position")
        fig.colorbar(image, ax=axes[0, h], fraction=0.046)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
