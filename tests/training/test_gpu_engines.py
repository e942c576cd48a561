"""scripts/gpu_engines.py without a GPU: its dry run loads every launch configuration and prints the command for
each that it would train, and a broken configuration is one line naming the file."""

import importlib.util
import shutil

import yaml

from .runs import REPO

spec = importlib.util.spec_from_file_location("gpu_engines", REPO / "scripts" / "gpu_engines.py")
gpu_engines = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_engines)


def test_dry_run_checks_every_configuration_and_prints_its_command(capsys):
    assert gpu_engines.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    configs = sorted(p.name for p in (REPO / "configs" / "accelerate").glob("*.yaml"))
    commands = [line for line in out.splitlines() if "accelerate.commands.launch" in line]
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == configs
    deepspeed = gpu_engines.importlib.util.find_spec("deepspeed") is not None
    for name, row in zip(configs, rows):
        skipped = name.startswith("deepspeed") and not deepspeed
        assert row.endswith("| skipped: deepspeed is not installed |" if skipped else "| checked (dry run) |"), row
        assert any(f"/{name} --num_processes 1 " in c for c in commands) != skipped, name
    assert all(str(REPO / "train_lm.py") in c and "--max_steps 20" in c for c in commands)
    # Each run trains at its configuration's precision (the table's column), not at train_lm.py's default.
    for name, c in zip([n for n, r in zip(configs, rows) if "skipped" not in r], commands):
        precision = yaml.safe_load((REPO / "configs" / "accelerate" / name).read_text())["mixed_precision"]
        assert f"--mixed_precision {precision} " in c, (name, c)


def test_a_broken_configuration_is_one_line_naming_the_file(tmp_path, capsys):
    shutil.copy(REPO / "configs" / "accelerate" / "one_gpu.yaml", tmp_path)
    (tmp_path / "typo.yaml").write_text("distributed_type: MULTI_GPUU\nmixed_precision: bf16\n")
    assert gpu_engines.main(["--dry-run", "--config_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gpu_engines.py: error: typo.yaml is not a valid accelerate "), err
