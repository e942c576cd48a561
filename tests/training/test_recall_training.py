"""`train_lm.py --task mqar`: a causal LM with the task's vocabulary, scored on the answers only, saved with task.json."""

import json
import math

import torch
import torch.nn.functional as F

from mesa_lm.data.tasks import load_task
from mesa_lm.models.mesa import MesaForCausalLM
from mesa_lm.training.arguments import parse_args
from mesa_lm.training.data import TokenTaskData
from mesa_lm.training.trainer import train


def test_a_recall_task_trains_a_causal_lm_scored_on_its_answers(tmp_path):
    out = tmp_path / "run"
    args = parse_args(["--preset", "none", "--task", "mqar", "--vocab_size", "32", "--seq_len", "24", "--num_pairs",
                       "4", "--config_overrides", '{"hidden_size": 16, "num_attention_heads": 2, "mlp_type": "none", '
                       '"mixer_types": ["softmax", "mesa"], "max_position_embeddings": 32}', "--max_steps", "3",
                       "--per_device_train_batch_size", "4", "--eval_batches", "1", "--per_device_eval_batch_size",
                       "8", "--report_to", "none", "--output_dir", str(out)])
    results = train(args)
    model = MesaForCausalLM.from_pretrained(out).eval()
    task = load_task(out)
    assert model.config.vocab_size == 32 and task.name == "mqar" and task.num_pairs == 4
    # the evaluation loss is the cross-entropy of the answers alone, on the held-out stream
    batch = task.global_batch(0, 8, stream=1)
    logits = model(input_ids=batch["input_ids"]).logits
    expected = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100)
    assert math.isclose(results["eval_loss"], expected.item(), rel_tol=1e-5)
    per_position = results["eval_loss_per_position"]
    assert per_position[: task.context_len] == [None] * task.context_len  # nothing scored in the context
    sums, counts = TokenTaskData.per_position_loss(model, batch)
    assert counts.sum() == 8 * task.queries and torch.isfinite(sums).all()
    assert json.loads((out / "task.json").read_text())["task"] == "mqar"
