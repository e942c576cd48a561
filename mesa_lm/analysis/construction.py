"""Linear-attention models as weight products: [P1]'s Proposition-1 construction, CompressedAlg-k, interpolation.

A stack of plain linear-attention layers on constructed tokens (no norm, MLP, bias, feature map or gate; [P1]'s
linear-k) is a function of its heads' products alone: layer l adds `sum_h V_h sum_{i<=t} e_i (e_i^T K_h e_t)` to the
residual stream, with `K_h = W_K,h^T W_Q,h` and `V_h = P_h W_V,h`, then clips. `products_forward` evaluates it, so a
trained model, a hand-made construction, a compressed model and their interpolations are scored by the same code.
"""

from __future__ import annotations

import torch

from ..models.mesa import MesaConfig, MesaForCausalRegression
from .weights import HeadProducts, block_identity_scales, head_products


def check_plain_linear(config: MesaConfig) -> None:
    """Raise unless the model is a stack of plain linear-attention layers (so its products define it)."""
    problems = []
    if any(m != "linear" for m in config.mixer_types):
        problems.append(f"mixer_types={config.mixer_types} (need all 'linear')")
    for field, plain in (("mlp_type", "none"), ("norm_type", "none"), ("linear_feature_map", "none"),
                         ("use_bias", False), ("linear_gate", False), ("linear_qk_norm", False),
                         ("position_type", "none"), ("read_in", "identity"), ("read_out", "slice")):
        if getattr(config, field) != plain:
            problems.append(f"{field}={getattr(config, field)!r} (need {plain!r})")
    if problems:
        raise ValueError("not a plain linear-attention model on constructed tokens: " + "; ".join(problems))


def model_products(model: MesaForCausalRegression) -> list[HeadProducts]:
    check_plain_linear(model.config)
    return [head_products(model, layer) for layer in range(model.config.num_hidden_layers)]


def products_forward(products: list[HeadProducts], inputs: torch.Tensor, output_dim: int,
                     clip: float | None = None) -> torch.Tensor:
    """Predictions (B, T, output_dim) of the linear-attention stack given by `products`, in float64."""
    h = inputs.double()
    causal = torch.ones(h.shape[1], h.shape[1], dtype=torch.bool).tril()
    for layer in products:
        scores = torch.einsum("bid,hde,bte->bhti", h, layer.key_query, h).masked_fill(~causal, 0.0)
        mixed = torch.einsum("bhti,bid->bhtd", scores, h)
        h = h + torch.einsum("hed,bhtd->bte", layer.value_output, mixed)
        if clip is not None:
            h = h.clamp(-clip, clip)
    return h[..., :output_dim]


def proposition1_model(state_dim: int, eta: float, num_heads: int = 2, head_dim: int | None = None,
                       activation_clip: float | None = None) -> MesaForCausalRegression:
    """A linear-1 model whose forward pass is exactly one GD step from `Phi_0 = 0` with step size `eta`.

    On tokens `e_t = (0, s_t, s_t, s_{t-1})`: head 1's query reads `s_t`, its key `s_{i-1}`, its value `s_i`, and its
    output writes `eta * value` into the first block, so the prediction is `eta sum_{i<=t} s_i s_{i-1}^T s_t`
    `= eta sum_{j<t} s_{j+1} s_j^T s_t` (`s_0 = 0`): `Phi_1 s_t` for `Phi_1 = eta * grad-step from 0`. Other heads
    are zero.
    """
    d = state_dim
    head_dim = head_dim or 2 * d
    if head_dim < d:
        raise ValueError(f"head_dim={head_dim} must be at least state_dim={d}")
    config = MesaConfig.from_preset("linear-1", hidden_size=4 * d, input_dim=4 * d, output_dim=d,
                                    num_attention_heads=num_heads, head_dim=head_dim, value_head_dim=head_dim,
                                    activation_clip=activation_clip)
    model = MesaForCausalRegression(config).double().eval()
    mixer = model.model.layers[0].mixer
    eye = torch.eye(d, dtype=torch.float64)
    with torch.no_grad():
        for proj in (mixer.q_proj, mixer.k_proj, mixer.v_proj, mixer.o_proj):
            proj.weight.zero_()
        mixer.q_proj.weight[:d, d : 2 * d] = eye  # q_t = s_t
        mixer.k_proj.weight[:d, 3 * d : 4 * d] = eye  # k_i = s_{i-1}
        mixer.v_proj.weight[:d, d : 2 * d] = eye  # v_i = s_i
        mixer.o_proj.weight[:d, :d] = eta * eye  # write eta * v into the prediction block
    return model


def compressed_products(products: list[HeadProducts], block: int) -> list[HeadProducts]:
    """CompressedAlg-k: every d x d block of every product replaced by the scaled identity of its diagonal mean."""
    def compress(matrix: torch.Tensor) -> torch.Tensor:
        scales = block_identity_scales(matrix, block)  # (H, n, n)
        blocks = scales[..., None, None] * torch.eye(block, dtype=matrix.dtype)
        n = scales.shape[-1]
        return blocks.transpose(-3, -2).reshape(*matrix.shape[:-2], n * block, n * block)

    return [HeadProducts(compress(p.key_query), compress(p.value_output)) for p in products]


def balance_products(products: list[HeadProducts]) -> list[HeadProducts]:
    """The same function with each head's scale split evenly: a head computes `V_h (...) K_h`, so `(s K_h, V_h / s)`
    is the same head for any s > 0; pick s so that `||K_h|| = ||V_h||` (Frobenius). Heads with a zero product stay."""
    balanced = []
    for layer in products:
        kq_norm = layer.key_query.flatten(1).norm(dim=1)
        vo_norm = layer.value_output.flatten(1).norm(dim=1)
        live = (kq_norm > 0) & (vo_norm > 0)
        scale = torch.where(live, (vo_norm / kq_norm.where(live, torch.ones_like(kq_norm))).sqrt(),
                            torch.ones_like(kq_norm))
        balanced.append(HeadProducts(layer.key_query * scale[:, None, None], layer.value_output / scale[:, None, None]))
    return balanced


def interpolate_products(a: list[HeadProducts], b: list[HeadProducts], alpha: float,
                         balance: bool = True) -> list[HeadProducts]:
    """`(1 - alpha) a + alpha b`, product by product, heads matched by index ([P1]'s interpolation between trained
    weights and a construction). With `balance` (default) both sides first get each head's scale split evenly between
    its two products (`balance_products`); otherwise an arbitrary split of the same function would bend the path."""
    if balance:
        a, b = balance_products(a), balance_products(b)
    return [
        HeadProducts((1 - alpha) * pa.key_query + alpha * pb.key_query,
                     (1 - alpha) * pa.value_output + alpha * pb.value_output)
        for pa, pb in zip(a, b)
    ]


__all__ = [
    "balance_products",
    "check_plain_linear",
    "compressed_products",
    "interpolate_products",
    "model_products",
    "products_forward",
    "proposition1_model",
]
