"""Test-time compute: the mesa solve is a config field that round-trips, and on a fixed model the CG outputs
approach the exact solve's monotonically, reaching it within float32 tolerance."""

import pytest
import torch

from mesa_lm import MesaConfig, MesaForCausalLM
from mesa_lm.data.tasks import make_task
from mesa_lm.evaluation.test_time_compute import (evaluate_test_time_compute, score_token_task, solve_settings,
                                                   with_solve)


def fixed_model(gate: str) -> MesaForCausalLM:
    """One mesa layer with 8-dim heads whose keys outgrow Lambda (so one CG step is far from exact)."""
    torch.manual_seed(0)
    config = MesaConfig(vocab_size=32, hidden_size=32, num_attention_heads=4, mixer_types=["mesa"], mlp_type="none",
                        position_type="none", mesa_gate=gate, mesa_lambda_init=0.2, chunk_size=16,
                        max_position_embeddings=64)
    model = MesaForCausalLM(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")):
                parameter.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("gate", ["none", "data"])
def test_cg_outputs_fall_monotonically_to_the_exact_solve(gate):
    model = fixed_model(gate)
    task = make_task("mqar", vocab_size=32, seq_len=48, num_pairs=6)
    batches = [task.global_batch(0, 8, stream=2)]
    solves = solve_settings((1, 2, 4, 8, 16), gated=gate == "data")
    rows = {r["solve"]: r for r in evaluate_test_time_compute(model, batches, score_token_task, solves,
                                                               timing_repeats=1, num_resamples=50, progress=False)}
    assert list(rows)[: 2 if gate == "none" else 1] == (["woodbury", "cholesky"] if gate == "none" else ["cholesky"])
    deviations = [rows[f"cg-{k}"]["deviation"] for k in (1, 2, 4, 8, 16)]
    # Far from exact after one step (the setting reaches the op), then strictly closer with every doubling.
    assert deviations[0] > 0.1
    assert all(later < earlier for earlier, later in zip(deviations, deviations[1:])), deviations
    # 16 steps on 8-dim systems: exact up to float32 rounding (the exact solves differ from each other by ~1e-6).
    assert deviations[-1] < 1e-4
    assert rows["cg-16"]["metric"] == rows["cholesky"]["metric"]
    if gate == "none":
        assert rows["cholesky"]["deviation"] < 1e-5
    assert all(r["ms_per_token"] > 0 for r in rows.values())


def test_the_solve_round_trips_through_the_config(tmp_path):
    config = MesaConfig(vocab_size=16, hidden_size=16, mixer_types=["mesa"], mesa_solve="cg", mesa_cg_max_iter=4,
                        mesa_cg_tol=1e-6)
    config.save_pretrained(tmp_path)
    loaded = MesaConfig.from_pretrained(tmp_path)
    assert (loaded.mesa_solve, loaded.mesa_cg_max_iter, loaded.mesa_cg_tol) == ("cg", 4, 1e-6)
    assert MesaConfig(vocab_size=16, hidden_size=16, mixer_types=["mesa"]).mesa_solve == "auto"


def test_the_config_offers_every_solve_of_the_op():
    """The config's list is a copy (the remote-code file cannot import the ops): it must name every method, and a
    gated model configured with the op's gated default solves exactly as `auto` does."""
    from mesa_lm.models.mesa.configuration_mesa import MESA_SOLVES
    from mesa_lm.ops.mesa.solvers import METHODS

    assert MESA_SOLVES == METHODS
    ids = torch.randint(0, 16, (2, 12), generator=torch.Generator().manual_seed(0))
    out = {}
    for solve in ("auto", "cg_exact"):
        torch.manual_seed(0)
        config = MesaConfig(vocab_size=16, hidden_size=16, num_attention_heads=2, mixer_types=["mesa"],
                            mesa_gate="data", mesa_solve=solve, chunk_size=4)
        out[solve] = MesaForCausalLM(config).eval()(ids).logits
    assert torch.equal(out["auto"], out["cg_exact"])


def test_with_solve_keeps_the_weights_and_changes_only_the_solve():
    model = fixed_model("none")
    copy = with_solve(model, solve_settings((3,))[-1])
    assert (copy.config.mesa_solve, copy.config.mesa_cg_max_iter) == ("cg", 3)
    assert (model.config.mesa_solve, model.config.mesa_cg_max_iter) == ("auto", None)
    for (name, a), (_, b) in zip(model.state_dict().items(), copy.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mesa_solve="lu"), "MesaConfig.mesa_solve='lu' is invalid: allowed values are"),
        (dict(mesa_solve="woodbury", mesa_gate="data"), "is exact only without a forget gate"),
        (dict(mesa_cg_max_iter=0), "MesaConfig.mesa_cg_max_iter=0 is invalid: must be an integer >= 1"),
        (dict(mesa_cg_max_iter=2.5), "MesaConfig.mesa_cg_max_iter=2.5 is invalid"),
        (dict(mesa_cg_tol=0.0), "MesaConfig.mesa_cg_tol=0.0 is invalid: must be a finite number > 0"),
        (dict(mesa_cg_tol=float("nan")), "MesaConfig.mesa_cg_tol=nan is invalid"),
    ],
)
def test_bad_solve_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError) as error:
        MesaConfig(vocab_size=16, hidden_size=16, mixer_types=["mesa"], **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)
