"""Command lines of the harnesses (`eval/*.py`, console scripts `mesa-eval-*`): options, one-line errors, outputs.

Bad input ends with `prog: error: <what is wrong>` on stderr and exit status 2, like argparse's own errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

from ..cli_options import (
    OneLineParser,
    at_least,
    check_folder_creatable,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    writable_path,
)

# --- option groups (a prefix such as "icl." namespaces them inside `compare`) ------------------------------------


def _add(group, prefix: str, name: str, **kwargs) -> None:
    if "choices" not in kwargs and "metavar" not in kwargs:
        kwargs["metavar"] = name.upper()
    group.add_argument(f"--{prefix}{name}", dest=f"{prefix}{name}", **kwargs)


def add_perplexity_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    g = parser.add_argument_group("perplexity")
    _add(g, prefix, "tokenizer", default=None, help="tokenizer name or folder (default: the checkpoint folder)")
    _add(g, prefix, "text_file", default=None, help="a local text file to score (default: the embedded docstring corpus)")
    _add(g, prefix, "dataset_name", default=None, help="a `datasets` name to score instead (needs it cached offline)")
    _add(g, prefix, "dataset_config_name", default=None, help="the dataset's configuration name")
    _add(g, prefix, "split", default="validation", help="split of the dataset or embedded corpus (default: validation)")
    _add(g, prefix, "window", type=at_least(2), default=None,
         help="tokens per window (default: the model's maximum length, capped by the tokenizer's)")
    _add(g, prefix, "stride", type=positive_int, default=None,
         help="start a window every STRIDE tokens (default: = window, block-wise); smaller strides give every "
              "scored token at least window - stride tokens of context")
    _add(g, prefix, "batch_size", type=positive_int, default=8, help="windows per forward pass per process (default: 8)")
    _add(g, prefix, "icl_positions", type=nonnegative_int, nargs=2, metavar=("EARLY", "LATE"), default=None,
         help="positions of the ICL score loss(LATE) - loss(EARLY) (default: 50 500, or window/10 and window-1 "
              "for shorter windows)")
    _add(g, prefix, "max_tokens", type=at_least(2), default=None, help="score only the first N tokens of the split")


def perplexity_options(args: argparse.Namespace, prefix: str = "") -> dict:
    names = ("tokenizer", "text_file", "dataset_name", "dataset_config_name", "split", "window", "stride",
             "batch_size", "icl_positions", "max_tokens")
    options = {n: getattr(args, prefix + n) for n in names}
    options["tokenizer_path"] = options.pop("tokenizer")
    if options["icl_positions"] is not None:
        options["icl_positions"] = tuple(options["icl_positions"])
    return options


def add_icl_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    from .icl_regression import FORMATS, TASKS

    g = parser.add_argument_group("few-shot in-context regression")
    _add(g, prefix, "task", choices=TASKS, default="vector", help="'vector': y = W x, W orthogonal; 'scalar': y = w . x, "
         "w ~ N(0, I) (default: vector)")
    _add(g, prefix, "formats", nargs="+", choices=FORMATS, default=["plain", "eos", "learned_eos"],
         help="prompt formats: plain pairs; eos: a zero vector after every pair; learned_eos: a prompt-tuned EOS; "
              "soft_prefix: a prompt-tuned prefix plus EOS (default: plain eos learned_eos)")
    _add(g, prefix, "pairs", type=positive_int, default=25, help="(x, y) pairs per prompt (default: 25)")
    _add(g, prefix, "num_prompts", type=at_least(2), default=1280, help="test prompts, shared by model and baselines (default: 1280)")
    _add(g, prefix, "num_tune_prompts", type=at_least(2), default=512,
         help="separate prompts on which the baselines' ridge lambda and GD-1 steps are tuned (default: 512)")
    _add(g, prefix, "distribution", choices=("uniform", "normal"), default="uniform",
         help="inputs x ~ U(-1, 1) or N(0, I) (default: uniform)")
    _add(g, prefix, "noise_std", type=nonnegative_float, default=0.0, help="label noise std (default: 0)")
    _add(g, prefix, "batch_size", type=positive_int, default=256, help="prompts per forward pass (default: 256)")
    _add(g, prefix, "tune_steps", type=nonnegative_int, default=200,
         help="Adam steps of prompt tuning for learned_eos / soft_prefix ([P1]: 5000; default: 200 for CPU)")
    _add(g, prefix, "tune_batch", type=positive_int, default=64, help="prompts per tuning step ([P1]: 256; default: 64)")
    _add(g, prefix, "tune_lr", type=positive_float, default=1e-3, help="Adam learning rate of prompt tuning (default: 1e-3)")
    _add(g, prefix, "prefix_len", type=positive_int, default=20, help="tokens of the soft prefix (default: 20)")
    _add(g, prefix, "knn", type=positive_int, default=3, help="k of the nearest-neighbours baseline (default: 3)")
    _add(g, prefix, "num_resamples", type=at_least(2), default=1000, help="bootstrap resamples for the 90%% intervals (default: 1000)")
    _add(g, prefix, "seed", type=nonnegative_int, default=0, help="seed of prompts, tuning and bootstrap (default: 0)")


def icl_options(args: argparse.Namespace, prefix: str = "") -> dict:
    names = ("task", "formats", "pairs", "num_prompts", "num_tune_prompts", "distribution", "noise_std", "batch_size",
             "tune_steps", "tune_batch", "tune_lr", "prefix_len", "knn", "num_resamples", "seed")
    options = {n: getattr(args, prefix + n) for n in names}
    options["formats"] = tuple(options["formats"])
    if options["num_prompts"] < 1000:
        print(f"warning: {options['num_prompts']} prompts; bootstrap intervals want >= 1000", file=sys.stderr)
    return options


def add_dynamics_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    from ..data.dynamics import DYNAMICS

    g = parser.add_argument_group("next-step prediction on linear dynamics")
    _add(g, prefix, "dynamics", choices=DYNAMICS, default="fully_observed", help="system (default: fully_observed)")
    _add(g, prefix, "seq_len", type=at_least(2), default=50, help="positions T per test sequence (default: 50)")
    _add(g, prefix, "num_sequences", type=at_least(2), default=1024, help="test sequences (default: 1024)")
    _add(g, prefix, "num_train", type=at_least(2), default=256, help="training sequences on which the baselines are tuned (default: 256)")
    _add(g, prefix, "noise_std", type=nonnegative_float, default=0.01, help="process noise std (default: 0.01, as in training)")
    _add(g, prefix, "hidden_dim", type=positive_int, default=15, help="hidden dimension of partially observed systems (default: 15)")
    _add(g, prefix, "prop2_steps", type=positive_int, nargs="*", default=[1, 2, 3], help="k of the Prop-2(k) baselines (default: 1 2 3)")
    _add(g, prefix, "prop2_iterations", type=positive_int, default=300, help="Adam iterations fitting Prop-2's step sizes (default: 300)")
    _add(g, prefix, "batch_size", type=positive_int, default=256, help="sequences per forward pass (default: 256)")
    _add(g, prefix, "num_resamples", type=at_least(2), default=1000, help="bootstrap resamples (default: 1000)")
    _add(g, prefix, "seed", type=nonnegative_int, default=0, help="seed of test and training sequences (default: 0)")


def dynamics_options(args: argparse.Namespace, prefix: str = "") -> dict:
    names = ("dynamics", "seq_len", "num_sequences", "num_train", "noise_std", "hidden_dim", "prop2_steps",
             "prop2_iterations", "batch_size", "num_resamples", "seed")
    options = {n: getattr(args, prefix + n) for n in names}
    options["prop2_steps"] = tuple(options["prop2_steps"])
    return options


# --- commands -----------------------------------------------------------------------------------------------------


def quiet_loading() -> None:
    """No weight-loading progress bars: stderr keeps only our progress and, on bad input, the one-line error."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def _run(parser: argparse.ArgumentParser, argv, body: Callable[[argparse.Namespace], None]) -> int:
    args = parser.parse_args(argv)
    quiet_loading()
    try:
        # where the results go is checked before the work, not after it
        if getattr(args, "output", None):
            writable_path(args.output, "--output")
        if getattr(args, "output_dir", None):
            check_folder_creatable(args.output_dir, "--output_dir")
        if not Path(args.checkpoint if hasattr(args, "checkpoint") else ".").exists():
            raise ValueError(f"checkpoint {args.checkpoint!r} does not exist")
        body(args)
    except ValueError as error:
        print(f"{parser.prog}: error: {str(error).splitlines()[0] if str(error) else type(error).__name__}",
              file=sys.stderr)
        return 2
    return 0


def _write(result: dict, output: str | None) -> None:
    text = json.dumps(result, indent=1)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)
        print(f"wrote {output}")


def _figure(harness: str, result: dict, output: str | None, name: str) -> None:
    if output:
        from .compare import figure

        path = figure(harness, {name: result}, Path(output).with_suffix(".png"))
        print(f"wrote {path}")


def perplexity_main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="perplexity",
        description="Perplexity, per-position loss and ICL score of a causal LM (any AutoModelForCausalLM) on a text "
                    "split. Data-parallel: `torchrun --nproc_per_node N eval/perplexity.py ...`.",
    )
    parser.add_argument("checkpoint", help="model folder (ours or a stock transformers causal LM)")
    parser.add_argument("--output", default=None, help="JSON file for the result (and a PNG of the per-position loss)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_perplexity_options(parser)

    def body(args):
        import torch
        from accelerate import Accelerator

        from .perplexity import run_perplexity

        accelerator = Accelerator(cpu=not torch.cuda.is_available())  # CPU mode: processes sync over gloo
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if accelerator.num_processes != launched:
            raise ValueError(f"WORLD_SIZE={launched} but Accelerate runs {accelerator.num_processes} process(es)")
        result = run_perplexity(args.checkpoint, **perplexity_options(args), accelerator=accelerator,
                                progress=not args.no_progress)
        if accelerator.is_main_process:
            print(f"perplexity {result['perplexity']:.3f}  mean NLL {result['mean_nll']:.4f}  "
                  f"ICL score {result['icl_score']}  ({result['tokens_scored']} tokens, "
                  f"{result['num_processes']} process(es))")
            _write(result, args.output)
            _figure("perplexity", result, args.output, Path(args.checkpoint).name)

    return _run(parser, argv, body)


def icl_regression_main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="icl_regression",
        description="Few-shot in-context regression of a MesaForCausalRegression checkpoint against least squares, "
                    "ridge, GD-1, averaging, k-NN and LSQ on the pairs the model sees, with bootstrap 90%% intervals.",
    )
    parser.add_argument("checkpoint", help="MesaForCausalRegression folder")
    parser.add_argument("--output", default=None, help="JSON file for the result (and a PNG figure beside it)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    add_icl_options(parser)

    def body(args):
        from .icl_regression import run_icl_regression

        result = run_icl_regression(args.checkpoint, **icl_options(args), progress=not args.no_progress)
        for fmt in result["formats"]:
            curve = result["curves"][f"model/{fmt}"]["normalised"]["mean"]
            print(f"{fmt}: normalised error at k=1: {curve[min(1, len(curve) - 1)]:.3f}, last: {curve[-1]:.3f}")
        _write(result, args.output)
        _figure("icl_regression", result, args.output, Path(args.checkpoint).name)

    return _run(parser, argv, body)


def dynamics_main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="dynamics",
        description="Next-step error per position on linear dynamics, next to zero, LSQ, GD-1, Prop-2(k), mesa and "
                    "softmax kernel regression baselines (tuned on training sequences, scored on the test ones).",
    )
    parser.add_argument("checkpoint", help="MesaForCausalRegression folder trained on dynamics")
    parser.add_argument("--output", default=None, help="JSON file for the result (and a PNG figure beside it)")
    add_dynamics_options(parser)

    def body(args):
        from .dynamics import run_dynamics

        result = run_dynamics(args.checkpoint, **dynamics_options(args))
        for name, value in result["mean_error"].items():
            print(f"{name:28s} mean next-step error {value:.4f}")
        _write(result, args.output)
        _figure("dynamics", result, args.output, Path(args.checkpoint).name)

    return _run(parser, argv, body)


def _named(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    return (name, path) if sep else (Path(spec).name, spec)


def compare_main(argv: list[str] | None = None) -> int:
    from .compare import HARNESSES

    parser = OneLineParser(
        prog="compare",
        description="Run harnesses over several checkpoints; write comparison.md / comparison.json (tables), one PNG "
                    "per harness and every result JSON under OUTPUT_DIR. Harness options are namespaced: "
                    "--icl.pairs, --dynamics.seq_len, --perplexity.window, ...",
    )
    parser.add_argument("models", nargs="+", help="checkpoints as NAME=FOLDER (or FOLDER, named by its last part)")
    parser.add_argument("--harnesses", nargs="+", choices=HARNESSES, default=list(HARNESSES),
                        help="harnesses to run; each runs on the checkpoints it applies to (default: all)")
    parser.add_argument("--output_dir", required=True, help="folder for tables, figures and results")
    add_perplexity_options(parser, "perplexity.")
    add_icl_options(parser, "icl.")
    add_dynamics_options(parser, "dynamics.")

    def body(args):
        from .compare import compare

        models = dict(_named(spec) for spec in args.models)
        if len(models) != len(args.models):
            raise ValueError("two checkpoints share a name; name them NAME=FOLDER")
        options = {
            "perplexity": {**perplexity_options(args, "perplexity."), "progress": False},
            "icl_regression": {**icl_options(args, "icl."), "progress": False},
            "dynamics": dynamics_options(args, "dynamics."),
        }
        record = compare(models, tuple(args.harnesses), args.output_dir, options)
        print((Path(args.output_dir) / "comparison.md").read_text())
        for path in record["figures"]:
            print(f"wrote {path}")

    return _run(parser, argv, body)
