"""MesaForCausalLM basics: tied head, loss, hidden states, attention maps, dtypes and input errors."""

import pytest
import torch
from transformers import DynamicCache

from mesa_lm import MesaCache, MesaConfig, MesaForCausalLM

from .mixes import VOCAB, make_model


def test_loss_equals_shifted_cross_entropy():
    model = make_model("softmax+mesa")
    ids = torch.randint(0, VOCAB, (3, 10))
    out = model(ids, labels=ids)
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)


def test_embeddings_are_tied_unless_asked_otherwise():
    model = make_model("softmax")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    untied = make_model("softmax", tie_word_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.model.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize("mix", ["softmax+linear+mesa", "mesa"])
def test_hidden_states_of_every_layer(mix):
    model = make_model(mix)
    out = model(torch.randint(0, VOCAB, (2, 7)), output_hidden_states=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert all(h.shape == (2, 7, 32) for h in out.hidden_states)


def test_softmax_attention_maps_are_causal_distributions_and_match_sdpa_outputs():
    model = make_model("softmax+linear+mesa")
    ids = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        plain = model(ids).logits
        out = model(ids, output_attentions=True)
    weights = out.attentions[0]
    assert all(w.shape == (2, 2, 9, 9) for w in out.attentions)  # linear and mesa maps: tests/models/test_attention_weights.py
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 9))
    assert torch.all(weights.triu(1) == 0)
    torch.testing.assert_close(out.logits, plain, rtol=1e-5, atol=1e-5)


def test_mesa_regulariser_starts_at_its_configured_value():
    scalar = make_model("softmax+mesa", mesa_lambda_init=2.0).model.layers[1].mixer
    torch.testing.assert_close(scalar.regulariser(), torch.full((2,), 0.5))  # Lambda = I / lambda_h
    diagonal = make_model("mesa", mesa_lambda_init=1.5).model.layers[0].mixer
    torch.testing.assert_close(diagonal.regulariser(), torch.full((2, 16), 1.5))


@pytest.mark.parametrize("mix", ["softmax+linear+mesa", "mesa", "linear"])
def test_bf16_autocast_is_finite_and_close_with_float32_states(mix):
    model = make_model(mix, initializer_range=0.05)
    ids = torch.randint(0, VOCAB, (2, 16))
    with torch.no_grad():
        reference = model(ids).logits
        cache = MesaCache(model.config)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(ids, past_key_values=cache, use_cache=True).logits
    assert torch.isfinite(logits).all()
    assert (logits.float() - reference).abs().max() <= 2e-2 * reference.abs().max() + 2e-2
    for layer, mixer in zip(cache.layers, model.config.mixer_types):
        if mixer == "mesa":
            assert layer.get("H").dtype == torch.float32 and layer.get("G").dtype == torch.float32


def test_training_step_reduces_the_loss():
    model = make_model("softmax+linear+mesa", initializer_range=0.02).train()
    ids = torch.randint(0, VOCAB, (4, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(p.grad is None for p in model.parameters())


def test_input_errors_name_the_problem():
    model = make_model("softmax+mesa")
    with pytest.raises(ValueError, match="exactly one of input_ids"):
        model()
    with pytest.raises(ValueError, match=r"input_ids has shape \(5,\); expected \(B, T\)"):
        model(torch.randint(0, VOCAB, (5,)))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4\); expected \(2, 5\)"):
        model(torch.randint(0, VOCAB, (2, 5)), attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=128"):
        model(torch.randint(0, VOCAB, (1, 129)))
    with pytest.raises(TypeError, match="the cache is a DynamicCache; mesa models need a MesaCache"):
        model(torch.randint(0, VOCAB, (1, 3)), past_key_values=DynamicCache(), use_cache=True)
    with pytest.raises(ValueError, match="vocab_size must be set"):
        MesaForCausalLM(MesaConfig(vocab_size=None))
