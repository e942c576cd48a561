"""What users of a transformers model expect: checkpointing, compile, GQA, attention kernels, auto-class code, resizing."""

import json

import pytest
import torch

from mesa_lm import MesaConfig, MesaForCausalLM
from mesa_lm.layers import softmax_attention as softmax_layer
from mesa_lm.models.mesa.hf_compat import CACHE_NAME, enable_activation_checkpointing

from .mixes import VOCAB, make_model

FOUR_MIXES = {
    "all-softmax": ["softmax"] * 2,
    "all-linear": ["linear"] * 2,
    "all-mesa": ["mesa"] * 2,
    "softmax+linear+mesa": ["softmax", "linear", "mesa"],
}


def four_layer_hybrid(**overrides) -> MesaForCausalLM:
    config = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_attention_heads=2,
        mixer_types=["softmax", "linear", "mesa", "mesa"],
        mesa_gate="data",
        mesa_lambda_type="diagonal",
        linear_gate=True,
        chunk_size=8,
        max_position_embeddings=256,
    )
    config.update(overrides)
    torch.manual_seed(3)
    return MesaForCausalLM(MesaConfig(**config))


def test_gradient_checkpointing_gives_the_plain_gradients_and_recomputes_each_block():
    model = four_layer_hybrid().train()
    ids = torch.randint(0, VOCAB, (2, 40))
    model(ids, labels=ids).loss.backward()
    plain = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    calls = []
    for block in model.model.layers:
        block.mixer.register_forward_hook(lambda *args: calls.append(1))
    enable_activation_checkpointing(model)
    model(ids, labels=ids).loss.backward()
    assert len(calls) == 2 * len(model.model.layers)  # every block ran again in the backward pass
    for name, p in model.named_parameters():
        scale = plain[name].abs().max().clamp(min=1e-30)
        assert (p.grad - plain[name]).abs().max() <= 1e-6 * scale, name


def test_gradient_checkpointing_in_training_does_not_use_a_cache():
    model = four_layer_hybrid().train()
    enable_activation_checkpointing(model)
    out = model(torch.randint(0, VOCAB, (1, 6)), use_cache=True)
    assert getattr(out, CACHE_NAME) is None
    model.eval()  # evaluation is not checkpointed: the cache works again
    assert getattr(model(torch.randint(0, VOCAB, (1, 6)), use_cache=True), CACHE_NAME).get_seq_length() == 6


@pytest.mark.parametrize("mix", sorted(FOUR_MIXES))
def test_compiled_forward_and_training_step_have_no_graph_break_and_equal_eager(mix):
    # fullgraph=True fails on any graph break. aot_eager traces the same graph (forward and backward) as inductor
    # without inductor's minutes of C++ compilation on two cores; the inductor speed-up is measured in benchmarks/.
    model = four_layer_hybrid(mixer_types=FOUR_MIXES[mix])
    ids = torch.randint(0, VOCAB, (2, 20))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # padding goes through the traced graph too

    def loss_and_logits(input_ids, attention_mask):
        out = model(input_ids, attention_mask=attention_mask, labels=input_ids, use_cache=False)
        return out.loss, out.logits

    compiled = torch.compile(loss_and_logits, fullgraph=True, backend="aot_eager")
    loss, logits = compiled(ids, mask)
    loss.backward()
    compiled_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    eager_loss, eager_logits = loss_and_logits(ids, mask)
    eager_loss.backward()
    torch.testing.assert_close(logits, eager_logits, rtol=1e-5, atol=1e-5 * eager_logits.abs().max().item())
    for name, p in model.named_parameters():
        scale = p.grad.abs().max().item()
        torch.testing.assert_close(compiled_grads[name], p.grad, rtol=1e-5, atol=1e-5 * scale, msg=name)


def test_grouped_query_attention_equals_full_attention_with_shared_key_value_heads():
    grouped = four_layer_hybrid(mixer_types=["softmax", "softmax"], num_attention_heads=4, num_key_value_heads=2)
    full = four_layer_hybrid(mixer_types=["softmax", "softmax"], num_attention_heads=4)
    state = grouped.state_dict()
    for i, block in enumerate(grouped.model.layers):
        head = block.mixer.head_dim
        for name in ("k_proj", "v_proj"):
            w = state[f"model.layers.{i}.mixer.{name}.weight"]  # (kv_heads * head, hidden)
            state[f"model.layers.{i}.mixer.{name}.weight"] = w.view(2, head, -1).repeat_interleave(2, 0).reshape(-1, 32)
    full.load_state_dict(state)
    assert grouped.model.layers[0].mixer.k_proj.weight.shape == (2 * 8, 32)
    ids = torch.randint(0, VOCAB, (2, 13))
    with torch.no_grad():
        torch.testing.assert_close(grouped(ids).logits, full(ids).logits, rtol=1e-5, atol=1e-5)
        cache = getattr(grouped.eval()(ids, use_cache=True), CACHE_NAME)
    assert cache[0].get("keys").shape == (2, 13, 2, 8)  # the cache holds the key/value heads only


def test_num_key_value_heads_must_divide_the_heads():
    with pytest.raises(ValueError, match="num_key_value_heads=3.*must divide num_attention_heads=4"):
        MesaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=3)


@pytest.mark.parametrize("mix", sorted(FOUR_MIXES))
def test_eager_and_sdpa_are_both_honoured_and_agree(mix, monkeypatch, tmp_path):
    model = four_layer_hybrid(mixer_types=FOUR_MIXES[mix]).eval()
    model.save_pretrained(tmp_path)
    ids = torch.randint(0, VOCAB, (2, 11))
    with torch.no_grad():
        sdpa = MesaForCausalLM.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
        assert sdpa.config._attn_implementation == "sdpa"
        expected = sdpa(ids).logits
        eager = MesaForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
        assert eager.config._attn_implementation == "eager"

        def no_sdpa(*args, **kwargs):
            raise AssertionError("the eager implementation called SDPA")

        monkeypatch.setattr(softmax_layer, "softmax_attention", no_sdpa)
        logits = eager(ids).logits
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_register_for_auto_class_then_save_pretrained_writes_the_usual_folder(tmp_path):
    model = make_model("softmax+linear+mesa")
    model.save_pretrained(tmp_path / "plain")
    MesaConfig.register_for_auto_class()
    MesaForCausalLM.register_for_auto_class("AutoModelForCausalLM")
    try:
        model.save_pretrained(tmp_path / "registered")
    finally:
        MesaConfig._auto_class = MesaForCausalLM._auto_class = None
    plain, registered = tmp_path / "plain", tmp_path / "registered"
    assert sorted(p.name for p in registered.iterdir()) == sorted(p.name for p in plain.iterdir())
    for name in (p.name for p in plain.iterdir() if p.suffix in (".py", ".json")):
        assert (registered / name).read_text() == (plain / name).read_text(), name
    assert json.loads((registered / "config.json").read_text())["auto_map"]["AutoModelForCausalLM"] == (
        "modeling_mesa.MesaForCausalLM"
    )


def test_resize_token_embeddings_keeps_rows_ties_and_generation():
    model = make_model("softmax+mesa")
    old = model.get_input_embeddings().weight.detach().clone()
    model.resize_token_embeddings(VOCAB + 11)
    assert model.config.vocab_size == VOCAB + 11
    assert model.get_input_embeddings().weight.shape == (VOCAB + 11, 32)
    torch.testing.assert_close(model.get_input_embeddings().weight[:VOCAB], old)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    ids = torch.randint(0, VOCAB + 11, (2, 5))
    assert model(ids).logits.shape == (2, 5, VOCAB + 11)
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape == (2, 9)


def test_meta_device_construction_then_init_matches_a_normal_init():
    config = make_model("softmax+linear+mesa", mesa_lambda_type="diagonal", mesa_gate="data").config
    with torch.device("meta"):
        model = MesaForCausalLM(config)
    assert all(p.is_meta for p in model.parameters())
    model.to_empty(device="cpu")
    model.init_weights()
    reference = MesaForCausalLM(config)
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        assert torch.isfinite(p).all(), name
        if q.numel() > 1 and q.std() > 0:  # random init: same distribution
            assert abs(p.std().item() - q.std().item()) <= 0.3 * q.std().item(), name
        else:  # constant init (norms, gate biases, the regulariser): the same values
            torch.testing.assert_close(p, q, msg=name)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
