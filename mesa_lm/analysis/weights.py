"""Per-head weight products of trained mixers, their d x d block view, and heat maps ([P1] section 4).

For head h of a layer with query, key, value and output projections, the products that determine what a linear
attention head computes are `W_K,h^T W_Q,h` (so that `k_i . q_t = e_i^T (W_K^T W_Q) e_t`) and `P_h W_V,h` (what the
head writes back into the residual stream). Both are (hidden x hidden) matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class HeadProducts:
    """`key_query[h] = W_K,h^T W_Q,h` and `value_output[h] = P_h W_V,h`, each (H, hidden, hidden), float64."""

    key_query: torch.Tensor
    value_output: torch.Tensor


def mixer_of(model, layer: int):
    """The token mixer of block `layer` of a MesaForCausalLM / MesaForCausalRegression / MesaModel."""
    base = getattr(model, "model", model)
    return base.layers[layer].mixer


def head_products(model, layer: int) -> HeadProducts:
    """The per-head products of layer `layer` (any mixer with q/k/v/o projections; biases are ignored)."""
    mixer = mixer_of(model, layer)
    heads, dk, dv = mixer.num_heads, mixer.head_dim, mixer.value_head_dim
    wq = mixer.q_proj.weight.detach().double().view(heads, dk, -1)
    wk = mixer.k_proj.weight.detach().double().view(heads, dk, -1)
    wv = mixer.v_proj.weight.detach().double().view(heads, dv, -1)
    wo = mixer.o_proj.weight.detach().double().view(-1, heads, dv).transpose(0, 1)  # (H, hidden, Dv)
    return HeadProducts(key_query=wk.transpose(1, 2) @ wq, value_output=wo @ wv)


def block_view(matrix: torch.Tensor, block: int) -> torch.Tensor:
    """Split (..., n*block, n*block) into (..., n, n, block, block) d x d blocks."""
    *lead, rows, cols = matrix.shape
    if rows % block or cols % block:
        raise ValueError(f"matrix of shape {tuple(matrix.shape)} does not split into blocks of {block}")
    return matrix.reshape(*lead, rows // block, block, cols // block, block).transpose(-3, -2)


def block_identity_scales(matrix: torch.Tensor, block: int) -> torch.Tensor:
    """For every d x d block, the scale `c` of the closest `c I` (the mean of its diagonal): (..., n, n)."""
    return torch.diagonal(block_view(matrix, block), dim1=-2, dim2=-1).mean(-1)


def plot_head_products(products: HeadProducts, block: int | None = None, path: str | None = None, title: str = ""):
    """Heat maps of every head's two products, d x d block boundaries drawn; saved to `path` if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = products.key_query.shape[0]
    fig, axes = plt.subplots(2, heads, figsize=(3.2 * heads, 6.2), squeeze=False)
    for h in range(heads):
        for row, (name, mats) in enumerate((("$W_K^T W_Q$", products.key_query), ("$P W_V$", products.value_output))):
            m = mats[h].float().numpy()  # matplotlib takes numpy arrays (a tensor makes numpy 2 warn)
            limit = max(float(abs(m).max()), 1e-12)
            image = axes[row, h].imshow(m, cmap="RdBu_r", vmin=-limit, vmax=limit)
            axes[row, h].set_title(f"head {h + 1}: {name}", fontsize=10)
            if block:
                for edge in range(block, m.shape[0], block):
                    axes[row, h].axhline(edge - 0.5, color="k", lw=0.5)
                    axes[row, h].axvline(edge - 0.5, color="k", lw=0.5)
            fig.colorbar(image, ax=axes[row, h], fraction=0.046)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
