"""The training loop: Accelerate, AdamW, warm-up + cosine, checkpoints that resume exactly, metrics and evaluation."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
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

from ..cli_options import first_line
from ..data.synthetic import SyntheticTask
from ..data.tasks import TASK_FILE
from ..data.text import load_texts, tokenize_into_blocks, train_bpe_tokenizer
from ..models.mesa import MesaConfig, MesaForCausalLM, MesaForCausalRegression
from .arguments import TrainArguments
from .checkpoints import (
    MANIFEST,
    TrainingError,
    load_checkpoint,
    load_scaler,
    load_sharded_optimizer,
    raise_if_disk_full,
    resolve_resume_path,
    save_checkpoint,
    save_final,
    verify_folder,
    write_json_atomic,
)
from .data import SyntheticData, TextData, TokenTaskData
from .engines import check_engine_options
from .optim import make_optimizer_and_schedule
from .sharded_state import full_tensors, is_sharded, local
from .throughput import ThroughputMeter, model_flops_per_token, peak_flops

METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "train_results.json"


def check_output_dir(args: TrainArguments) -> Path | None:
    """Refuse to write into a non-empty output folder unless resuming or told to overwrite (before any write).

    Returns the checkpoint to resume from (verified; newer corrupt ones are skipped with a warning), or None."""
    from ..cli_options import check_folder_creatable

    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir {args.output_dir!r} exists and is not a folder")
    check_folder_creatable(out, "output_dir")
    if args.resume_from_checkpoint:
        return resolve_resume_path(args.resume_from_checkpoint, args.checkpoint_dir)
    if out.is_dir() and any(out.iterdir()) and not args.overwrite_output_dir:
        raise ValueError(
            f"output_dir {args.output_dir!r} is not empty; pass --overwrite_output_dir to reuse it, "
            "--resume_from_checkpoint latest to continue it, or another --output_dir"
        )
    return None


# What an earlier run left in its output folder; an overwrite removes them once the new run is known to start.
RUN_FILES = ("metrics.jsonl", "train_results.json", "train_args.json", "config.json", "generation_config.json",
             "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", MANIFEST)


def remove_earlier_run(out: Path, checkpoint_dir: Path) -> None:
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


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
    plugin = accelerator.state.deepspeed_plugin
    check_engine_options(args, accelerator.distributed_type.name, plugin.deepspeed_config if plugin else None)
    return accelerator


def prepare_tokenizer(args: TrainArguments, is_main: bool, train_texts: list[str], resuming: bool):
    """The tokenizer, in memory: loaded (--tokenizer_name, or the run's own when resuming) or trained on the main
    process. Returns (tokenizer or None on non-main processes that must load the main one's, whether to save it)."""
    from transformers import AutoTokenizer

    out = Path(args.output_dir)
    source = args.tokenizer_name or (str(out) if resuming and (out / "tokenizer.json").is_file() else None)
    if source:
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
        except Exception as error:  # OSError, ValueError, ...: a missing or unreadable tokenizer
            what = f"tokenizer_name={args.tokenizer_name!r}" if args.tokenizer_name else f"the tokenizer in {out}"
            first = first_line(error)
            raise ValueError(f"{what} cannot be loaded: {first[:200]}")
        if tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {source!r} has no EOS token to separate texts")
        return tokenizer, False
    if not is_main:
        return None, True
    return train_bpe_tokenizer(train_texts, args.vocab_size, args.block_size), True


def build_text_data(args: TrainArguments, tokenizer, texts: tuple[list[str], list[str]]) -> TextData:
    train_texts, validation_texts = texts
    tokenizer.model_max_length = args.block_size
    train_blocks = tokenize_into_blocks(train_texts, tokenizer, args.block_size)
    try:
        validation_blocks = tokenize_into_blocks(validation_texts, tokenizer, args.block_size)
    except ValueError as error:
        raise ValueError(f"validation text: {error}")
    return TextData(train_blocks, validation_blocks, args.seed, args.max_eval_blocks, args.per_device_eval_batch_size)


def build_config(args: TrainArguments, task: SyntheticTask | None) -> MesaConfig:
    """The model's config, checked against the sequence length before any data is prepared.

    The vocabulary of a text model is filled in once the tokenizer exists.
    """
    if args.model_name_or_path:
        path = Path(args.model_name_or_path)
        if not (path / "config.json").is_file():
            raise ValueError(f"model_name_or_path={args.model_name_or_path!r} is not a model folder (no config.json)")
        reason = verify_folder(path, exhaustive=False) if (path / MANIFEST).is_file() else None
        if reason is not None:
            raise ValueError(f"model_name_or_path={args.model_name_or_path!r} is corrupt: {reason}")
        try:
            config = MesaConfig.from_pretrained(args.model_name_or_path)
        except Exception as error:
            raise ValueError(f"model_name_or_path={args.model_name_or_path!r} has an unreadable config: "
                             f"{first_line(error)[:200]}")
        if task is not None and task.model == "causal_lm" and config.vocab_size != task.vocab_size:
            raise ValueError(f"model_name_or_path={args.model_name_or_path!r} has a vocabulary of "
                             f"{config.vocab_size} tokens; the task has vocab_size={task.vocab_size}")
        if task is not None and task.model == "regression" and (config.input_dim, config.output_dim) != (
                task.input_dim, task.output_dim):
            raise ValueError(f"model_name_or_path={args.model_name_or_path!r} reads {config.input_dim}-dim inputs "
                             f"and writes {config.output_dim}-dim outputs; the task has {task.input_dim} and "
                             f"{task.output_dim}")
    else:
        overrides = dict(args.model_overrides)
        if task is not None and task.model == "causal_lm":  # a synthetic task on token ids
            overrides.update(vocab_size=task.vocab_size)
        elif task is not None:
            overrides.update(vocab_size=None, input_dim=task.input_dim, output_dim=task.output_dim)
        try:
            if args.model_preset:
                config = MesaConfig.from_preset(args.model_preset, **overrides)
            else:
                config = MesaConfig(**overrides)
        except (TypeError, KeyError) as error:  # a value of the wrong type deep inside the config
            raise ValueError(f"config_overrides {args.model_overrides} are invalid: {error}")
    if task is None:
        length, what = args.block_size, f"block_size={args.block_size}"
    else:
        length, what = task.length, task.length_option
    if length > config.max_position_embeddings:
        raise ValueError(f"{what} exceeds the model's max_position_embeddings={config.max_position_embeddings}")
    return config


def build_model(args: TrainArguments, config: MesaConfig, tokenizer):
    if args.task != "text" and config.vocab_size is None:
        if args.model_name_or_path:
            return MesaForCausalRegression.from_pretrained(args.model_name_or_path)
        return MesaForCausalRegression(config)
    if args.model_name_or_path:
        return MesaForCausalLM.from_pretrained(args.model_name_or_path)
    if tokenizer is None:  # a synthetic task on token ids: the task's vocabulary is already in the config
        return MesaForCausalLM(config)
    config.vocab_size = len(tokenizer)
    config.eos_token_id, config.bos_token_id = tokenizer.eos_token_id, tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    return MesaForCausalLM(config)


def make_task(args: TrainArguments) -> SyntheticTask | None:
    return None if args.task == "text" else args.make_task()


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
    """Compare exact float64 fingerprints (sum and sum of squares of every tensor) across processes (of the full
    tensors under FSDP2: a check that the shards were gathered alike)."""
    if accelerator.num_processes == 1:
        return True
    fingerprint = torch.stack(
        [torch.stack([p.double().sum(), p.double().pow(2).sum()]) for p in map(full_tensors, model.parameters())]
    ).flatten()
    gathered = accelerator.gather(fingerprint[None].to(accelerator.device))
    return bool((gathered == gathered[0]).all().item())


def train(args: TrainArguments) -> dict:
    """Run one training job described by `args`; returns the final results (also written to the output folder).

    SIGINT and SIGTERM are caught while it runs (a checkpoint is saved, then it returns); the previous handlers are
    restored afterwards.
    """
    with StopFlag() as stop:
        try:
            return _train(args, stop)
        finally:
            release_process_group()


def finish_trackers(accelerator: Accelerator) -> None:
    """What `Accelerator.end_training` does but for destroying the process group (see `release_process_group`)."""
    for tracker in accelerator.trackers:
        tracker.finish()


def release_process_group() -> None:
    """Destroy the default process group once nothing of the run holds it any more.

    Order matters: DDP's reducer keeps a reference to the group. If the reducer dropped the last one, the group's
    destructor would join gloo's worker thread while holding the GIL, and that thread, freeing the Python tensor of
    the last barrier, waits for the GIL: the process hangs at exit (seen about one run in two on a loaded 2-core
    machine). So the run's objects go first (`_train` has returned, `gc.collect` frees cycles) and the group last.
    """
    gc.collect()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def check_text(texts: list[str], what: str) -> None:
    """Refuse binary files (an executable, an archive) given as text: NUL bytes or mostly undecodable bytes."""
    sample = "".join(text[:100_000] for text in texts[:20])
    if "\x00" in sample or sample.count("\ufffd") > 0.01 * max(1, len(sample)):
        raise ValueError(f"{what} is not a UTF-8 text file (it holds binary data)")


def prepare(args: TrainArguments, is_main: bool, resume_path: Path | None):
    """Everything a run needs, built in memory and checked, with nothing written yet: task, config, texts,
    tokenizer, blocks, model, optimizer, schedule and (when resuming) their states. Raises ValueError."""
    task = make_task(args)
    config = build_config(args, task)
    tokenizer, save_tokenizer, texts, data = None, False, None, None
    if task is None:  # missing, empty or binary files are reported before anything is written
        texts = load_texts(args.train_file, args.validation_file, args.dataset_name, args.dataset_config_name)
        if args.train_file:
            check_text(texts[0], f"train_file {args.train_file!r}")
        if args.validation_file:
            check_text(texts[1], f"validation_file {args.validation_file!r}")
        tokenizer, save_tokenizer = prepare_tokenizer(args, is_main, texts[0], resuming=resume_path is not None)
        if tokenizer is not None:
            data = build_text_data(args, tokenizer, texts)
    else:
        data_class = TokenTaskData if task.model == "causal_lm" else SyntheticData
        data = data_class(task, args.eval_batches, args.per_device_eval_batch_size)
    set_seed(args.seed)
    model = build_model(args, config, tokenizer) if (task is not None or tokenizer is not None) else None
    return task, config, texts, tokenizer, save_tokenizer, data, model


def _train(args: TrainArguments, stop: StopFlag) -> dict:
    resume_path = check_output_dir(args)
    out = Path(args.output_dir)
    rank = int(os.environ.get("RANK", "0"))  # what the launchers set; Accelerate agrees (checked below)
    task, config, texts, tokenizer, save_tokenizer, data, model = prepare(args, rank == 0, resume_path)
    state = None
    if model is not None:  # on the main process (and every process of a synthetic task)
        optimizer, schedule = make_optimizer_and_schedule(model, args)
        if resume_path is not None:
            state = load_checkpoint(resume_path, model, optimizer, schedule, rank)
    accelerator = make_accelerator(args)
    if accelerator.process_index != rank:
        raise ValueError(f"RANK={rank} but Accelerate runs this as process {accelerator.process_index}")
    if resume_path is not None:
        load_scaler(resume_path, accelerator)

    # The run is known to start: only now is the output folder touched.
    if accelerator.is_main_process:
        try:
            if args.overwrite_output_dir and resume_path is None:
                remove_earlier_run(out, args.checkpoint_dir)
            out.mkdir(parents=True, exist_ok=True)
            if save_tokenizer:
                tokenizer.save_pretrained(out)
            write_json_atomic(out / "train_args.json", dataclasses.asdict(args))
            write_json_atomic(out / TASK_FILE, args.make_task().to_dict())  # read back by the harnesses
        except OSError as error:
            raise_if_disk_full(error, str(out))
            raise
    accelerator.wait_for_everyone()
    if model is None:  # a text run's other processes load the tokenizer the main process trained
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(out)
        data = build_text_data(args, tokenizer, texts)
        set_seed(args.seed)
        model = build_model(args, config, tokenizer)
        optimizer, schedule = make_optimizer_and_schedule(model, args)
        if resume_path is not None:
            state = load_checkpoint(resume_path, model, optimizer, schedule, rank)

    # Counted on the whole model, before any engine shards it.
    flops_per_token = model_flops_per_token(model, args.block_size if task is None else task.length)
    # The schedule is stepped by hand once per optimizer step (accelerate would step it once per process).
    model, optimizer = accelerator.prepare(model, optimizer)
    if state is not None and is_sharded(model):  # FSDP2 replaced the optimizer's parameters by their shards
        load_sharded_optimizer(resume_path, optimizer)

    start_step, tokens_seen = 0, 0
    if state is not None:
        start_step, tokens_seen = state["step"], state["tokens_seen"]
        accelerator.print(f"resumed from {resume_path} at step {start_step}")

    if accelerator.trackers == [] and args.report_to == "tensorboard" and accelerator.log_with:
        accelerator.init_trackers("tensorboard", config={k: str(v) for k, v in dataclasses.asdict(args).items()})
    metrics_file = open(out / METRICS_FILE, "a") if accelerator.is_main_process else None
    progress = tqdm(total=args.max_steps, initial=start_step, disable=not accelerator.is_local_main_process,
                    desc="train")
    try:
        meter = ThroughputMeter(flops_per_token, peak_flops(args.mixed_precision, args.peak_tflops))
        return _loop(args, accelerator, model, optimizer, schedule, data, stop, out, start_step, tokens_seen,
                     resume_path, tokenizer, metrics_file, progress, meter)
    except OSError as error:
        raise_if_disk_full(error, f"into {out}")
        raise
    finally:
        progress.close()  # before any error line, so that it stands on its own line
        if metrics_file is not None:
            metrics_file.close()


def parameters_finite(model, accelerator: Accelerator) -> bool:
    finite = all(bool(torch.isfinite(local(p)).all()) for p in accelerator.unwrap_model(model).parameters())
    return not any_process(not finite, accelerator)


def any_process(flag: bool, accelerator: Accelerator) -> bool:
    if accelerator.num_processes == 1:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(tensor, "sum").item() > 0)


def _loop(args, accelerator, model, optimizer, schedule, data, stop, out, start_step, tokens_seen, resume_path,
          tokenizer, metrics_file, progress, meter: ThroughputMeter) -> dict:
    def log(record: dict) -> None:
        if metrics_file is not None:
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        accelerator.log(scalars, step=record["step"])

    last_good = resume_path

    def good() -> str:
        return f"the last good checkpoint, {last_good}, is kept" if last_good else "no checkpoint was saved"

    def checkpoint(step: int) -> Path:
        if not parameters_finite(model, accelerator):  # never save (or later resume from) a NaN model
            raise TrainingError(f"non-finite weights at step {step}; {good()}; no model saved")
        state = {"step": step, "tokens_seen": tokens_seen + tokens_this_run, "max_steps": args.max_steps}
        return save_checkpoint(accelerator, args.checkpoint_dir, step, state, args.save_total_limit, model, optimizer,
                               schedule)

    world, accum, per_device = accelerator.num_processes, args.gradient_accumulation_steps, args.per_device_train_batch_size
    model.train()
    started, steps_done, tokens_this_run, last_eval, last_loss = time.perf_counter(), 0, 0, None, None
    skipped = 0
    meter.start(started)
    # Under fp16 the grad scaler itself skips overflowing steps; only a non-finite loss is an error then.
    check_gradients = accelerator.scaler is None
    for step in range(start_step, args.max_steps):
        step_loss = torch.zeros((), device=accelerator.device)
        for micro in range(accum):
            batch = data.train_batch(step, micro, accum, accelerator.process_index, world, per_device)
            tokens = data.tokens_in(batch)
            tokens_this_run += tokens * world
            meter.add_tokens(tokens)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            # gradients are averaged across processes only on the last micro-batch
            sync = accelerator.no_sync(model) if micro < accum - 1 else contextlib.nullcontext()
            with sync:
                loss = model(**batch, use_cache=False).loss / accum
                accelerator.backward(loss)
            step_loss += loss.detach()
        # the total norm is measured even without clipping, to catch non-finite gradients
        clip = args.max_grad_norm if args.max_grad_norm > 0 else float("inf")
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), clip)
        # DeepSpeed clips inside its engine and reports the norm as a number, or None before its first step
        norm_known = grad_norm is not None
        grad_norm = torch.as_tensor(grad_norm if norm_known else 0.0)
        done = step + 1
        bad = not bool(torch.isfinite(step_loss)) or (
            check_gradients and norm_known and not bool(torch.isfinite(grad_norm))
        )
        if any_process(bad, accelerator):
            what = "loss" if not bool(torch.isfinite(step_loss)) else "gradient"
            if args.nonfinite == "stop":
                progress.close()
                deepspeed = accelerator.distributed_type.name == "DEEPSPEED"  # it cannot skip (engines.py)
                hint = "" if deepspeed else " (--nonfinite skip skips such steps)"
                raise TrainingError(
                    f"non-finite {what} at step {done} (loss {step_loss.item():.4g}, gradient norm "
                    f"{float(grad_norm):.4g}); training stopped, {good()}, no model saved{hint}"
                )
            optimizer.zero_grad(set_to_none=True)  # skip the update; the data stream and schedule move on
            skipped += 1
            log({"step": done, "skipped_nonfinite": skipped})
        else:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        schedule.step()
        steps_done += 1
        progress.update(1)

        if done % args.logging_steps == 0 or done == args.max_steps:
            mean_loss = last_loss = accelerator.reduce(step_loss, "mean").item()  # waits for the device
            record = {"step": done, "loss": mean_loss, "learning_rate": schedule.get_last_lr()[0]}
            if args.max_grad_norm > 0 and norm_known:
                record["grad_norm"] = float(grad_norm)
            record.update(tokens_seen=tokens_seen + tokens_this_run, **meter.record(time.perf_counter()))
            progress.set_postfix(loss=f"{mean_loss:.4f}")
            log(record)
        meter.pause(time.perf_counter())  # evaluation and checkpoints are not training throughput
        if (args.eval_steps and done % args.eval_steps == 0) or done == args.max_steps:
            last_eval = evaluate(accelerator.unwrap_model(model), data, accelerator)
            log({"step": done, **last_eval})
            accelerator.print(f"step {done}: eval_loss {last_eval['eval_loss']:.4f}")
        saved = (args.save_steps and done % args.save_steps == 0) or done == args.max_steps
        if saved:
            last_good = checkpoint(done)
        if stop.any_process(accelerator) and done < args.max_steps:
            if not saved:
                last_good = checkpoint(done)
            progress.close()
            accelerator.print(
                f"stopped by signal at step {done}; checkpoint {args.checkpoint_dir / f'step-{done}'} saved; "
                "continue with --resume_from_checkpoint latest"
            )
            finish_trackers(accelerator)
            return {"stopped_at_step": done}
        meter.start(time.perf_counter())
    progress.close()
    elapsed = time.perf_counter() - started

    unwrapped = accelerator.unwrap_model(model)
    if not parameters_finite(model, accelerator):
        raise TrainingError(f"non-finite weights after step {args.max_steps}; {good()}; no model saved")
    identical = parameters_identical_across_processes(unwrapped, accelerator)
    # Under FSDP2 every process helps gather the full weights; the main process writes them as one folder.
    final_state = full_tensors(accelerator.get_state_dict(model)) if is_sharded(unwrapped) else None
    results = {
        "steps": args.max_steps,
        "steps_this_run": steps_done,
        "skipped_nonfinite_steps": skipped,
        "train_seconds": elapsed,
        "steps_per_second": steps_done / elapsed if elapsed > 0 else None,
        "tokens_per_second": tokens_this_run / elapsed if elapsed > 0 else None,
        "model_flops_per_token": meter.flops_per_token,
        "final_train_loss": last_loss,
        "num_processes": world,
        "parameters_identical_across_processes": identical,
        **(last_eval or {}),
    }
    if accelerator.is_main_process:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # stderr keeps our progress and, on failure, the one-line error

        def write(folder: Path) -> None:
            unwrapped.save_pretrained(folder, state_dict=final_state)
            if tokenizer is not None:
                tokenizer.save_pretrained(folder)
            (folder / RESULTS_FILE).write_text(json.dumps(results, indent=2))

        save_final(out, write)
    accelerator.wait_for_everyone()
    finish_trackers(accelerator)
    speed = f"{results['steps_per_second']:.2f} steps/s"
    if results["tokens_per_second"]:
        speed += f", {results['tokens_per_second']:.0f} tokens/s"
    accelerator.print(
        f"done: {steps_done} steps in {elapsed:.1f}s ({speed}); eval_loss {results.get('eval_loss', float('nan')):.4f}; "
        f"model saved to {out}" + (f"; {skipped} step(s) with non-finite values skipped" if skipped else "")
    )
    if not identical:
        accelerator.print("WARNING: parameters differ across processes: gradients were not synchronised")
    return results
