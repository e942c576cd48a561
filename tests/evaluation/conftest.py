"""Tiny checkpoints for the harness tests: a mesa LM with its tokenizer, a regression model, a stock GPT-2."""

import pytest
import torch

from mesa_lm import MesaConfig, MesaForCausalLM, MesaForCausalRegression

TEXT = (
    "The mesa layer solves a ridge regression over the context at every position. "
    "Linear attention sums values weighted by key and query products. "
    "Softmax attention normalises the scores over the context. "
) * 40

TINY_REGRESSION = dict(hidden_size=16, head_dim=8, intermediate_size=32, num_attention_heads=2, input_dim=4,
                       output_dim=4, max_position_embeddings=64)


@pytest.fixture(scope="session")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "valid.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture(scope="session")
def lm_dir(tmp_path_factory):
    """A random 2-layer softmax + mesa LM and a byte-level BPE, saved together."""
    from mesa_lm.data.text import train_bpe_tokenizer

    folder = tmp_path_factory.mktemp("lm")
    tokenizer = train_bpe_tokenizer([TEXT], vocab_size=300, model_max_length=64)
    torch.manual_seed(0)
    config = MesaConfig(vocab_size=len(tokenizer), hidden_size=16, num_attention_heads=2, mixer_types=["softmax", "mesa"],
                        mlp_type="none", max_position_embeddings=64, eos_token_id=tokenizer.eos_token_id)
    MesaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def regression_dir(tmp_path_factory):
    """A random hybrid regression model with the task it would have been trained on (task.json)."""
    from mesa_lm.data.tasks import make_task, save_task

    folder = tmp_path_factory.mktemp("regression")
    torch.manual_seed(0)
    MesaForCausalRegression(MesaConfig.from_preset("hybrid-mesa", **TINY_REGRESSION)).save_pretrained(folder)
    save_task(folder, make_task("dynamics", state_dim=4))
    return folder


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory, lm_dir):
    """A stock transformers GPT-2 (random, tiny), sharing the mesa LM's tokenizer."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("gpt2")
    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=1, n_head=2)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
