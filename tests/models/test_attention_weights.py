"""`output_attentions=True` for every mixer: a (B, H, T, T) causal map per layer with o_proj's input = A v (after
the mesa output norm), zero weight on padded keys, and with a cache a map over the keys of the current call."""

import pytest
import torch

from mesa_lm import MesaCache
from mesa_lm.layers.mesa_layer import MesaLayer

from .mixes import VOCAB, make_model

MIXES = ["softmax", "linear", "mesa", "softmax+linear+mesa"]
B, T = 2, 9


def padded_batch(pad: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (B, T), generator=gen)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, :pad] = 0  # left padding in row 0
    ids[0, :pad] = 0
    return ids, mask


def bound(weights: torch.Tensor, values: torch.Tensor) -> float:
    """Rounding bound for A v against the layer's own output: a few eps of the weights' dtype per term of the
    longest row, times the largest |A| |v| (the mesa maps also carry the solve's error: small for these
    well-conditioned H_t + Lambda, covered by the factor 100)."""
    eps = torch.finfo(weights.dtype).eps
    return 100 * weights.shape[-1] * eps * (weights.abs() @ values.abs().transpose(1, 2).to(weights.dtype)).max().item()


@pytest.mark.parametrize("mix", MIXES)
def test_every_layer_returns_a_causal_map_and_the_outputs_do_not_change(mix):
    model = make_model(mix)
    ids, mask = padded_batch()
    with torch.no_grad():
        plain = model(ids, attention_mask=mask).logits
        out = model(ids, attention_mask=mask, output_attentions=True)
    assert len(out.attentions) == model.config.num_hidden_layers
    for weights in out.attentions:
        assert weights.shape == (B, 2, T, T) and weights.dtype == torch.float32
        assert torch.all(weights.triu(1) == 0)
        # padded keys get no weight from real queries (linear and mesa: from any query)
        assert torch.all(weights[0, :, 3:, :3] == 0)
    for kind, weights in zip(model.config.mixer_types, out.attentions):
        if kind != "softmax":
            assert torch.all(weights[0, :, :, :3] == 0)
    if "softmax" not in model.config.mixer_types:  # linear and mesa outputs still come from the fast paths
        assert torch.equal(out.logits, plain)
    else:
        # The softmax layer computes its output from the weights, a float32 rounding apart from SDPA's (measured:
        # 6 eps32 of the largest logit), carried through two blocks and the head: 64 eps32 of max|logits|.
        atol = 64 * torch.finfo(torch.float32).eps * plain.abs().max().item()
        torch.testing.assert_close(out.logits, plain, rtol=0, atol=atol)


@pytest.mark.parametrize("mix", MIXES)
def test_o_proj_input_is_weights_times_values(mix):
    model = make_model(mix).double()
    ids, mask = padded_batch()
    captured = {}

    def keep(name, i):
        def hook(module, args, output):
            captured[name, i] = output[0] if isinstance(output, tuple) else output

        return hook

    def keep_input(name, i):
        def hook(module, args):
            captured[name, i] = args[0]

        return hook

    for i, block in enumerate(model.model.layers):
        mixer = block.mixer
        mixer.o_proj.register_forward_pre_hook(keep_input("o", i))
        source = mixer.conv if getattr(mixer, "conv", None) is not None else mixer.v_proj
        source.register_forward_hook(keep("v", i))
    with torch.no_grad():
        out = model(ids, attention_mask=mask, output_attentions=True)
    for i, (block, weights) in enumerate(zip(model.model.layers, out.attentions)):
        mixer = block.mixer
        value_heads = getattr(mixer, "num_kv_heads", mixer.num_heads)  # softmax layers may share value heads (GQA)
        v = captured["v", i][..., -value_heads * mixer.value_head_dim :]  # the conv's output is [q, k, v]
        v = v.reshape(B, T, value_heads, mixer.value_head_dim).repeat_interleave(mixer.num_heads // value_heads, 2)
        kind = model.config.mixer_types[i]
        assert weights.dtype == torch.float64  # every mixer computes its map in the model's float64
        o = torch.einsum("bhts,bshd->bthd", weights, v.to(weights.dtype)).to(v.dtype)
        if isinstance(mixer, MesaLayer) and mixer.output_norm is not None:
            o = mixer.output_norm(o)
        expected = o.reshape(B, T, -1)
        got = captured["o", i]
        torch.testing.assert_close(got, expected, rtol=0, atol=bound(weights, v), msg=f"layer {i} ({kind})")


@pytest.mark.parametrize(
    "mix, kind", [("softmax", "softmax"), ("linear", "linear"), ("mesa", "mesa"), ("softmax+linear+mesa", "linear"),
     ("softmax+linear+mesa", "mesa")]
)
def test_with_a_cache_the_map_covers_the_keys_of_the_call(mix, kind):
    # Softmax: every cached key. Linear and mesa: the current tokens only (the past lives in a state that keeps no
    # per-key weights); that block equals the full forward's, since the state enters the mesa solve exactly.
    # One layer, so the full and the cached call see the same layer inputs up to float64 rounding.
    model = make_model(mix, mixer_types=[kind], num_hidden_layers=1).double()
    ids = torch.randint(1, VOCAB, (B, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        (full,) = model(ids, output_attentions=True).attentions
        cache = MesaCache(model.config)
        model(ids[:, :5], past_key_values=cache, use_cache=True)
        (chunk,) = model(ids[:, 5:8], past_key_values=cache, use_cache=True, output_attentions=True).attentions
        (step,) = model(ids[:, 8:], past_key_values=cache, use_cache=True, output_attentions=True).attentions
    atol = 1e-12 * full.abs().max().item()
    if kind == "softmax":
        assert chunk.shape == (B, 2, 3, 8) and step.shape == (B, 2, 1, 9)
        # float64 weights in [0, 1]: a softmax over <= 9 keys (a few eps each)
        eps_atol = 16 * torch.finfo(torch.float64).eps
        torch.testing.assert_close(chunk, full[:, :, 5:8, :8], rtol=0, atol=eps_atol)
        torch.testing.assert_close(step, full[:, :, 8:, :9], rtol=0, atol=eps_atol)
    else:
        assert chunk.shape == (B, 2, 3, 3) and step.shape == (B, 2, 1, 1)
        torch.testing.assert_close(chunk, full[:, :, 5:8, 5:8], rtol=0, atol=atol)
        torch.testing.assert_close(step, full[:, :, 8:, 8:], rtol=0, atol=atol)
