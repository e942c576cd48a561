"""Cached generation for every layer mix: incremental logits, generate() with and without the cache, padding."""

import pytest
import torch

from mesa_lm import MesaCache
from mesa_lm.models.mesa.hf_compat import CACHE_NAME

from .mixes import MIXES, VOCAB, make_model


def assert_logits_close(actual, expected):
    scale = expected.abs().max()
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_chunked_prefill_then_single_tokens_equals_full_forward(mix):
    model = make_model(mix)
    ids = torch.randint(1, VOCAB, (2, 23))
    with torch.no_grad():
        full = model(ids, use_cache=False).logits
        cache = MesaCache(model.config)
        pieces, start = [], 0
        for stop in [7, 12, 18] + list(range(19, 24)):  # three prefill pieces, then token by token
            out = model(ids[:, start:stop], past_key_values=cache, use_cache=True)
            pieces.append(out.logits)
            start = stop
        assert getattr(out, CACHE_NAME) is cache and cache.get_seq_length() == 23
    assert_logits_close(torch.cat(pieces, dim=1), full)


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_greedy_generate_with_cache_equals_without(mix):
    model = make_model(mix)
    prompt = torch.randint(1, VOCAB, (2, 6))
    cached = model.generate(prompt, max_new_tokens=32, do_sample=False, use_cache=True)
    uncached = model.generate(prompt, max_new_tokens=32, do_sample=False, use_cache=False)
    assert cached.shape == (2, 38)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_left_padded_batch_matches_rows_alone(mix):
    model = make_model(mix)
    lengths = [4, 9, 13]
    rows = [torch.randint(1, VOCAB, (n,)) for n in lengths]
    width = max(lengths)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = row
        mask[i, width - len(row) :] = 1
    batch = model.generate(ids, attention_mask=mask, max_new_tokens=16, do_sample=False)
    for i, row in enumerate(rows):
        alone = model.generate(row[None], max_new_tokens=16, do_sample=False)
        assert torch.equal(batch[i, width:], alone[0, len(row) :]), f"row {i} differs"


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_beam_search_and_sampling_with_cache_equal_without(mix):
    model = make_model(mix)
    prompt = torch.randint(1, VOCAB, (2, 5))
    kwargs = dict(max_new_tokens=12, num_beams=3, num_return_sequences=2, do_sample=False)
    assert torch.equal(model.generate(prompt, use_cache=True, **kwargs), model.generate(prompt, use_cache=False, **kwargs))
    sampled = []
    for use_cache in (True, False):
        torch.manual_seed(7)
        sampled.append(model.generate(prompt, max_new_tokens=12, do_sample=True, top_k=20, use_cache=use_cache))
    assert torch.equal(*sampled)


def test_padded_logits_match_unpadded_logits():
    model = make_model("softmax+linear+mesa")
    row = torch.randint(1, VOCAB, (1, 10))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), row], dim=1)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 10)], dim=1).long()
    with torch.no_grad():
        alone = model(row).logits
        with_pad = model(padded, attention_mask=mask).logits[:, 3:]
    assert_logits_close(with_pad, alone)


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_greedy_tokens_are_the_argmax_of_a_full_forward_at_every_step(mix):
    model = make_model(mix)
    prompt = torch.randint(1, VOCAB, (2, 5))
    sequences = model.generate(prompt, max_new_tokens=12, do_sample=False)
    with torch.no_grad():
        logits = model(sequences[:, :-1], use_cache=False).logits
    assert torch.equal(logits[:, 4:].argmax(-1), sequences[:, 5:])


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_generation_continues_from_a_returned_cache(mix):
    model = make_model(mix)
    prompt = torch.randint(1, VOCAB, (2, 6))
    first = model.generate(prompt, max_new_tokens=7, do_sample=False, return_dict_in_generate=True)
    cache = getattr(first, CACHE_NAME)
    assert isinstance(cache, MesaCache) and cache.get_seq_length() == 6 + 7 - 1  # the last token is not fed yet
    continued = model.generate(first.sequences, max_new_tokens=9, do_sample=False, **{CACHE_NAME: cache})
    assert torch.equal(continued, model.generate(prompt, max_new_tokens=16, do_sample=False))


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_generation_from_inputs_embeds_equals_generation_from_ids(mix):
    model = make_model(mix)
    prompt = torch.randint(1, VOCAB, (2, 6))
    embeds = model.get_input_embeddings()(prompt).detach()
    from_embeds = model.generate(inputs_embeds=embeds, max_new_tokens=10, do_sample=False)
    assert torch.equal(from_embeds, model.generate(prompt, max_new_tokens=10, do_sample=False)[:, 6:])
