"""The training loop: Accelerate, AdamW, warm-up + cosine, checkpoints that resume exactly, metrics and evaluation."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from ..data.synthetic import SyntheticTask
from ..data.text import load_texts, tokenize_into_blocks, train_bpe_tokenizer
from ..models.mesa import MesaConfig, MesaForCausalLM, MesaForCausalRegression
from .arguments import TrainArguments
from .checkpoints import drop_tied_copies, load_trainer_state, resolve_resume_path, save_checkpoint
from .data import SyntheticData, TextData
from .optim import make_optimizer_and_schedule

METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "train_results.json"


def check_output_dir(args: TrainArguments) -> None:
    """Refuse to write into a non-empty output folder unless resuming or told to overwrite (before any write)."""
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir {args.output_dir!r} exists and is not a folder")
    if args.resume_from_checkpoint:
        resolve_resume_path(args.resume_from_checkpoint, args.checkpoint_dir)
        return
    if out.is_dir() and any(out.iterdir()) and not args.overwrite_output_dir:
        raise ValueError(
            f"output_dir {args.output_dir!r} is not empty; pass --overwrite_output_dir to reuse it, "
            "--resume_from_checkpoint latest to continue it, or another --output_dir"
        )


def make_accelerator(args: TrainArguments) -> Accelerator:
    """CPU mode is forced without CUDA, so that several CPU processes synchronise their gradients over gloo."""
    log_with = None
    if args.report_to == "tensorboard":
        try:
            import tensorboard  # noqa: F401

            log_with = "tensorboard"
        except ImportError:
            print("tensorboard is not installed: metrics go to metrics.jsonl only")
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=args.mixed_precision,
        log_with=log_with,
        project_dir=args.output_dir,
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != launched:
        raise ValueError(
            f"launched with WORLD_SIZE={launched} but Accelerate runs {accelerator.num_processes} process(es); "
            "on CPU use `torchrun --nproc_per_node N` (CPU mode is forced)"
        )
    accelerator.register_save_state_pre_hook(drop_tied_copies)
    return accelerator


def build_text_data(args: TrainArguments, accelerator: Accelerator, texts: tuple[list[str], list[str]], resuming: bool):
    """Texts -> tokenizer (trained once on the main process, or loaded) -> blocks."""
    from transformers import AutoTokenizer

    train_texts, validation_texts = texts
    out = Path(args.output_dir)
    if args.tokenizer_name:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name)
        if tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {args.tokenizer_name!r} has no EOS token to separate texts")
    else:
        if accelerator.is_main_process and not (resuming and (out / "tokenizer.json").is_file()):
            train_bpe_tokenizer(train_texts, args.vocab_size, args.block_size).save_pretrained(out)
        accelerator.wait_for_everyone()  # the other processes load what the main process trained
        tokenizer = AutoTokenizer.from_pretrained(out)
    tokenizer.model_max_length = args.block_size
    train_blocks = tokenize_into_blocks(train_texts, tokenizer, args.block_size)
    validation_blocks = tokenize_into_blocks(validation_texts, tokenizer, args.block_size)
    data = TextData(train_blocks, validation_blocks, args.seed, args.max_eval_blocks, args.per_device_eval_batch_size)
    return data, tokenizer


def build_config(args: TrainArguments, task: SyntheticTask | None) -> MesaConfig:
    """The model's config, checked against the sequence length before any data is prepared.

    The vocabulary of a text model is filled in once the tokenizer exists.
    """
    if args.model_name_or_path:
        config = MesaConfig.from_pretrained(args.model_name_or_path)
    else:
        overrides = dict(args.model_overrides)
        if task is not None:
            overrides.update(vocab_size=None, input_dim=task.input_dim, output_dim=task.output_dim)
        config = MesaConfig.from_preset(args.model_preset, **overrides) if args.model_preset else MesaConfig(**overrides)
    length, what = (args.block_size, "block_size") if task is None else (task.length, "sequence length")
    if length > config.max_position_embeddings:
        raise ValueError(f"{what}={length} exceeds the model's max_position_embeddings={config.max_position_embeddings}")
    return config


def build_model(args: TrainArguments, config: MesaConfig, tokenizer):
    if args.task != "text":
        if args.model_name_or_path:
            return MesaForCausalRegression.from_pretrained(args.model_name_or_path)
        return MesaForCausalRegression(config)
    if args.model_name_or_path:
        return MesaForCausalLM.from_pretrained(args.model_name_or_path)
    config.vocab_size = len(tokenizer)
    config.eos_token_id, config.bos_token_id = tokenizer.eos_token_id, tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    return MesaForCausalLM(config)


def make_task(args: TrainArguments) -> SyntheticTask | None:
    if args.task == "text":
        return None
    return SyntheticTask(
        name=args.task,
        dynamics=args.dynamics,
        tokens=args.tokens,
        state_dim=args.state_dim,
        hidden_dim=args.hidden_dim,
        seq_len=args.seq_len,
        noise_std=args.noise_std,
        num_pairs=args.num_pairs,
        input_distribution=args.input_distribution,
        seed=args.seed,
    )


@torch.no_grad()
def evaluate(model, data, accelerator: Accelerator) -> dict:
    """Mean held-out loss and its per-position profile, summed exactly over all processes."""
    was_training = model.training
    model.eval()
    sums = counts = None
    for batch in data.eval_data(accelerator.process_index, accelerator.num_processes):
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            s, c = data.per_position_loss(model, batch)
        sums = s if sums is None else sums + s
        counts = c if counts is None else counts + c
    sums, counts = accelerator.reduce(sums, "sum"), accelerator.reduce(counts, "sum")
    model.train(was_training)
    per_position = [(s / c).item() if c > 0 else None for s, c in zip(sums, counts)]
    return {"eval_loss": (sums.sum() / counts.sum()).item(), "eval_loss_per_position": per_position}


class StopFlag:
    """Set by SIGINT/SIGTERM; checked between steps so that a checkpoint can be written before exiting."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():  # callers of train() in-process get their handlers back
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def any_process(self, accelerator: Accelerator) -> bool:
        if accelerator.num_processes == 1:
            return self.signal is not None
        flag = torch.tensor([1.0 if self.signal is not None else 0.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, "sum").item() > 0)


def parameters_identical_across_processes(model, accelerator: Accelerator) -> bool:
    """Compare exact float64 fingerprints (sum and sum of squares of every tensor) across processes."""
    if accelerator.num_processes == 1:
        return True
    fingerprint = torch.stack(
        [torch.stack([p.double().sum(), p.double().pow(2).sum()]) for p in model.parameters()]
    ).flatten()
    gathered = accelerator.gather(fingerprint[None].to(accelerator.device))
    return bool((gathered == gathered[0]).all().item())


def train(args: TrainArguments) -> dict:
    """Run one training job described by `args`; returns the final results (also written to the output folder).

    SIGINT and SIGTERM are caught while it runs (a checkpoint is saved, then it returns); the previous handlers are
    restored afterwards.
    """
    with StopFlag() as stop:
        return _train(args, stop)


def _train(args: TrainArguments, stop: StopFlag) -> dict:
    check_output_dir(args)
    task = make_task(args)
    config = build_config(args, task)
    texts = None
    if task is None:  # missing or empty files are reported before anything is written
        texts = load_texts(args.train_file, args.validation_file, args.dataset_name, args.dataset_config_name)
    accelerator = make_accelerator(args)
    out = Path(args.output_dir)
    resume_path = resolve_resume_path(args.resume_from_checkpoint, args.checkpoint_dir) if args.resume_from_checkpoint else None
    if accelerator.is_main_process:
        if args.overwrite_output_dir and not resume_path:
            shutil.rmtree(args.checkpoint_dir, ignore_errors=True)
            (out / METRICS_FILE).unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_args.json").write_text(json.dumps(dataclasses.asdict(args), indent=2, default=str))
    accelerator.wait_for_everyone()

    set_seed(args.seed)
    tokenizer = None
    if task is None:
        data, tokenizer = build_text_data(args, accelerator, texts, resuming=resume_path is not None)
    else:
        data = SyntheticData(task, args.eval_batches, args.per_device_eval_batch_size)
    model = build_model(args, config, tokenizer)
    optimizer, schedule = make_optimizer_and_schedule(model, args)
    # The schedule is stepped by hand once per optimizer step (accelerate would step it once per process).
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(schedule)

    start_step, tokens_seen = 0, 0
    if resume_path is not None:
        accelerator.load_state(str(resume_path))
        state = load_trainer_state(resume_path)
        start_step, tokens_seen = state["step"], state["tokens_seen"]
        accelerator.print(f"resumed from {resume_path} at step {start_step}")

    if accelerator.trackers == [] and args.report_to == "tensorboard" and accelerator.log_with:
        accelerator.init_trackers("tensorboard", config={k: str(v) for k, v in dataclasses.asdict(args).items()})
    metrics_file = open(out / METRICS_FILE, "a") if accelerator.is_main_process else None

    def log(record: dict) -> None:
        if metrics_file is not None:
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        accelerator.log(scalars, step=record["step"])

    def checkpoint(step: int) -> Path:
        state = {"step": step, "tokens_seen": tokens_seen + tokens_this_run, "max_steps": args.max_steps}
        return save_checkpoint(accelerator, args.checkpoint_dir, step, state, args.save_total_limit)

    world, accum, per_device = accelerator.num_processes, args.gradient_accumulation_steps, args.per_device_train_batch_size
    progress = tqdm(total=args.max_steps, initial=start_step, disable=not accelerator.is_local_main_process, desc="train")
    model.train()
    started, steps_done, tokens_this_run, last_eval, last_loss = time.perf_counter(), 0, 0, None, None
    for step in range(start_step, args.max_steps):
        step_loss = torch.zeros((), device=accelerator.device)
        for micro in range(accum):
            batch = data.train_batch(step, micro, accum, accelerator.process_index, world, per_device)
            tokens_this_run += data.tokens_in(batch) * world
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            # gradients are averaged across processes only on the last micro-batch
            sync = accelerator.no_sync(model) if micro < accum - 1 else contextlib.nullcontext()
            with sync:
                loss = model(**batch, use_cache=False).loss / accum
                accelerator.backward(loss)
            step_loss += loss.detach()
        grad_norm = None
        if args.max_grad_norm > 0:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        steps_done += 1
        done = step + 1
        progress.update(1)

        if done % args.logging_steps == 0 or done == args.max_steps:
            mean_loss = last_loss = accelerator.reduce(step_loss, "mean").item()
            record = {"step": done, "loss": mean_loss, "learning_rate": schedule.get_last_lr()[0]}
            if grad_norm is not None:
                record["grad_norm"] = float(grad_norm)
            progress.set_postfix(loss=f"{mean_loss:.4f}")
            log(record)
        if (args.eval_steps and done % args.eval_steps == 0) or done == args.max_steps:
            last_eval = evaluate(accelerator.unwrap_model(model), data, accelerator)
            log({"step": done, **last_eval})
            accelerator.print(f"step {done}: eval_loss {last_eval['eval_loss']:.4f}")
        saved = (args.save_steps and done % args.save_steps == 0) or done == args.max_steps
        if saved:
            checkpoint(done)
        if stop.any_process(accelerator) and done < args.max_steps:
            if not saved:
                checkpoint(done)
            progress.close()
            accelerator.print(
                f"stopped by signal at step {done}; checkpoint {args.checkpoint_dir / f'step-{done}'} saved; "
                "continue with --resume_from_checkpoint latest"
            )
            accelerator.end_training()
            if metrics_file is not None:
                metrics_file.close()
            return {"stopped_at_step": done}
    progress.close()
    elapsed = time.perf_counter() - started

    unwrapped = accelerator.unwrap_model(model)
    identical = parameters_identical_across_processes(unwrapped, accelerator)
    results = {
        "steps": args.max_steps,
        "steps_this_run": steps_done,
        "train_seconds": elapsed,
        "steps_per_second": steps_done / elapsed if elapsed > 0 else None,
        "tokens_per_second": tokens_this_run / elapsed if elapsed > 0 else None,
        "final_train_loss": last_loss,
        "num_processes": world,
        "parameters_identical_across_processes": identical,
        **(last_eval or {}),
    }
    if accelerator.is_main_process:
        unwrapped.save_pretrained(out)
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
        (out / RESULTS_FILE).write_text(json.dumps(results, indent=2))
        metrics_file.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    speed = f"{results['steps_per_second']:.2f} steps/s"
    if results["tokens_per_second"]:
        speed += f", {results['tokens_per_second']:.0f} tokens/s"
    accelerator.print(
        f"done: {steps_done} steps in {elapsed:.1f}s ({speed}); eval_loss {results.get('eval_loss', float('nan')):.4f}; "
        f"model saved to {out}"
    )
    if not identical:
        accelerator.print("WARNING: parameters differ across processes: gradients were not synchronised")
    return results
