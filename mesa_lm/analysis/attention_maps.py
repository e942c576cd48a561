"""Softmax attention maps of a trained model, and how much weight goes to the current and the previous token."""

from __future__ import annotations

import torch


@torch.no_grad()
def attention_maps(model, layer: int = 0, **inputs) -> torch.Tensor:
    """Mean attention weights over the batch of softmax layer `layer`: (H, T, T), rows are query positions."""
    out = model(**inputs, output_attentions=True)
    weights = out.attentions[layer]
    if weights is None:
        raise ValueError(f"layer {layer} is not a softmax layer: it has no attention weights")
    return weights.float().mean(0)


def weight_on_offsets(maps: torch.Tensor, max_offset: int = 3) -> torch.Tensor:
    """Mean weight that a query puts on the token `k` positions back, for `k = 0..max_offset`: (H, max_offset + 1).

    [P1] finds the first softmax layer attending to the current (k = 0) and the previous (k = 1) token.
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
    fig, axes = plt.subplots(1, heads, figsize=(3.3 * heads, 3.4), squeeze=False)
    for h in range(heads):
        image = axes[0, h].imshow(maps[h], cmap="viridis", vmin=0)
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
