#!/usr/bin/env python
"""Run `train_lm.py` for a few steps under every launch configuration in configs/accelerate/ that fits one GPU, and
print a markdown table of final loss, tokens/s per process and MFU (for docs/benchmarks.md).

    python scripts/gpu_engines.py                 # on a CUDA machine: about 1 min per configuration
    python scripts/gpu_engines.py --dry-run       # anywhere: load and check every configuration, print the commands

Each configuration runs with one process (`--num_processes 1`; `cpu_multiprocess.yaml` then trains on the GPU in
float32, as `train_lm.py` takes the GPU when there is one). DeepSpeed configurations are skipped when deepspeed is
not installed.
A run that fails or passes `--timeout` seconds gets its last error line in the table, and the others still run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "accelerate"
TRAIN_LM = REPO / "train_lm.py"
ENGINES = ("NO", "MULTI_GPU", "FSDP", "DEEPSPEED")  # what runs on one CUDA GPU


def train_options(preset: str, steps: int) -> list[str]:
    return ["--preset", preset, "--max_steps", str(steps), "--logging_steps", "5", "--eval_steps", "0",
            "--save_steps", "0", "--max_eval_blocks", "32", "--report_to", "none"]


def plan(config_dir: Path) -> list[dict]:
    """One entry per configuration file: its engine, and why it is skipped (None if it runs). Raises ValueError."""
    from accelerate.commands.config.config_args import load_config_from_file

    from mesa_lm.cli_options import first_line

    files = sorted(config_dir.glob("*.yaml"))
    if not files:
        raise ValueError(f"config_dir {str(config_dir)!r} holds no .yaml launch configuration")
    entries = []
    for file in files:
        try:
            config = load_config_from_file(str(file))
        except Exception as error:  # yaml errors, unknown keys, bad values: the library's first line names them
            first = first_line(error)
            raise ValueError(f"{file.name} is not a valid accelerate configuration: {first[:200]}")
        engine = config.distributed_type.name
        skip = None
        if config.use_cpu or engine not in ENGINES:
            skip = f"{engine} does not run on a GPU"
        elif engine == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
            skip = "deepspeed is not installed"
        entries.append({"file": file, "engine": engine, "precision": config.mixed_precision, "skip": skip})
    return entries


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(entry: dict, options: list[str], out: Path) -> list[str]:
    """The launch of train_lm.py under one configuration, at the configuration's precision (train_lm.py's own
    --mixed_precision, default 'no', would otherwise override the configuration's)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(entry["file"]),
            "--num_processes", "1", "--main_process_port", str(free_port()), str(TRAIN_LM), *options,
            "--mixed_precision", entry["precision"], "--output_dir", str(out)]


def run(entry: dict, options: list[str], out: Path, timeout: float) -> dict:
    """Train under one configuration; the row of the table."""
    from mesa_lm.training.trainer import METRICS_FILE

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    try:
        result = subprocess.run(command(entry, options, out), cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=timeout)
        status = "ok" if result.returncode == 0 else last_error(result.stderr)
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    row = {"status": status, "seconds": time.perf_counter() - started}
    if status == "ok":
        logged = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
        last = [r for r in logged if "loss" in r][-1]
        row.update(loss=last["loss"], tokens_per_second=last["tokens_per_second_per_process"], mfu=last.get("mfu"))
    return row


def last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("train:")]
    return ("failed: " + (lines[-1] if lines else "no output"))[:160].replace("|", "/")


def table(entries: list[dict], rows: list[dict], preset: str, steps: int) -> str:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    lines = [f"`{preset}`, {steps} steps, one process, on {device} (torch {torch.__version__}):", "",
             "| configuration | engine | precision | final loss | tokens/s per process | MFU | wall s | status |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for entry, row in zip(entries, rows):
        loss = f"{row['loss']:.4f}" if "loss" in row else "-"
        speed = f"{row['tokens_per_second']:,.0f}" if "tokens_per_second" in row else "-"
        mfu = f"{100 * row['mfu']:.1f}%" if row.get("mfu") is not None else "-"
        wall = f"{row['seconds']:.0f}" if "seconds" in row else "-"
        lines.append(f"| `{entry['file'].name}` | {entry['engine']} | {entry['precision']} | {loss} | {speed} | "
                     f"{mfu} | {wall} | {row['status']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="check every configuration and print the commands; "
                        "needs no GPU")
    parser.add_argument("--preset", default="lm-hybrid-mesa-4", help="train_lm.py run preset (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per configuration (default: 20)")
    parser.add_argument("--timeout", type=float, default=85.0,
                        help="seconds allowed per configuration, start-up included (default: %(default)s)")
    parser.add_argument("--config_dir", default=str(CONFIGS), help="folder of accelerate configurations")
    args = parser.parse_args(argv)
    try:
        if args.steps < 1:
            raise ValueError(f"steps={args.steps} is invalid: must be an integer >= 1")
        if not args.timeout > 0:
            raise ValueError(f"timeout={args.timeout} is invalid: must be a number > 0")
        sys.path.insert(0, str(REPO))
        from mesa_lm.training.arguments import parse_args

        options = train_options(args.preset, args.steps)
        parse_args([*options, "--output_dir", "checked"])  # a bad preset is reported here, before any launch
        entries = plan(Path(args.config_dir))
        import torch

        if not args.dry_run and not torch.cuda.is_available():
            raise ValueError("no CUDA device here: run on a GPU machine, or pass --dry-run to check the configurations")
    except ValueError as error:
        print(f"gpu_engines.py: error: {error}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gpu-engines-") as tmp:
        rows = []
        for entry in entries:
            out = Path(tmp) / entry["file"].stem
            if entry["skip"]:
                rows.append({"status": f"skipped: {entry['skip']}"})
            elif args.dry_run:
                print(" ".join(command(entry, options, out)))
                rows.append({"status": "checked (dry run)"})
            else:
                rows.append(run(entry, options, out, args.timeout))
                print(f"{entry['file'].name}: {rows[-1]['status']} in {rows[-1]['seconds']:.0f} s", file=sys.stderr)
    print(table(entries, rows, args.preset, args.steps))
    return 0 if all(r["status"].startswith(("ok", "skipped", "checked")) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
