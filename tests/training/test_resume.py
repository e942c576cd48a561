"""Checkpoints: SIGKILL then resume equals an uninterrupted run; SIGINT saves and exits cleanly."""

import signal
import subprocess
import sys
import time

from .runs import TINY, TRAIN_LM, env, max_weight_difference, run

ARGS = [*TINY, "--max_steps", "40", "--eval_steps", "0", "--save_steps", "5", "--save_total_limit", "3",
        "--per_device_train_batch_size", "64"]


def start(output_dir) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, TRAIN_LM, *ARGS, "--output_dir", str(output_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
    )


def wait_for(path, process, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_sigkill_after_a_checkpoint_then_resume_equals_uninterrupted_run(tmp_path):
    run([*ARGS, "--output_dir", str(tmp_path / "straight")])

    killed = tmp_path / "killed"
    process = start(killed)
    wait_for(killed / "checkpoints" / "step-10", process)
    process.kill()
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists(), "the run finished before it was killed"

    result = run([*ARGS, "--output_dir", str(killed), "--resume_from_checkpoint", "latest"])
    assert "resumed from" in result.stdout
    assert max_weight_difference(tmp_path / "straight", killed) <= 1e-6
    # only the last save_total_limit checkpoints are kept, and no half-written one is left behind
    names = sorted(p.name for p in (killed / "checkpoints").iterdir())
    assert names == ["step-30", "step-35", "step-40"]


def test_sigint_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "interrupted"
    process = start(out)
    wait_for(out / "checkpoints" / "step-5", process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    assert "stopped by signal at step" in stdout
    assert "Traceback" not in stderr
    stopped = int(stdout.split("stopped by signal at step ")[1].split(";")[0])
    assert stopped < 40 and (out / "checkpoints" / f"step-{stopped}" / "trainer_state.json").is_file()
    resumed = run([*ARGS, "--output_dir", str(out), "--resume_from_checkpoint", "latest"])
    assert f"at step {stopped}" in resumed.stdout
    assert (out / "model.safetensors").is_file()
