"""Command lines of the harnesses, built from the registry (`mesa_lm.evaluation.harnesses`): `eval/harness.py
HARNESS CHECKPOINT` for any harness, `eval/<name>.py` (console scripts `mesa-eval-*`) for the built-in ones, and
`eval/compare.py` over several checkpoints.

Bad input ends with `prog: error: <what is wrong>` on stderr and exit status 2, like argparse's own errors; a
warning (e.g. a model folder without `task.json`) is one line `prog: warning: ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Callable

from ..cli_options import OneLineParser, check_folder_creatable, writable_path
from .harnesses import get_harness, registered_harnesses
from .harnesses.base import TaskAssumed, add_options, options_from_args


def quiet_loading() -> None:
    """No weight-loading progress bars: stderr keeps only our progress and, on bad input, the one-line error."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def _run(parser: argparse.ArgumentParser, argv, body: Callable[[argparse.Namespace], None]) -> int:
    args = parser.parse_args(argv)
    quiet_loading()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TaskAssumed)
            # where the results go is checked before the work, not after it
            if getattr(args, "output", None):
                writable_path(args.output, "--output")
            if getattr(args, "output_dir", None):
                check_folder_creatable(args.output_dir, "--output_dir")
            if hasattr(args, "checkpoint") and not Path(args.checkpoint).exists():
                raise ValueError(f"checkpoint {args.checkpoint!r} does not exist")
            try:
                body(args)
            finally:
                for w in caught:
                    if issubclass(w.category, TaskAssumed):
                        print(f"{parser.prog}: warning: {w.message}", file=sys.stderr)
                    else:
                        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    except ValueError as error:
        print(f"{parser.prog}: error: {str(error).splitlines()[0] if str(error) else type(error).__name__}",
              file=sys.stderr)
        return 2
    return 0


def _add_harness_arguments(parser: argparse.ArgumentParser, harness) -> None:
    parser.add_argument("checkpoint", help=f"model folder ({harness.needs.replace('_', ' ')} model)")
    parser.add_argument("--output", default=None, help="JSON file for the result (and a PNG figure beside it)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    add_options(parser, harness.Options)


def _run_harness(harness, args: argparse.Namespace) -> None:
    result = harness.run(args.checkpoint, options_from_args(args, harness.Options), progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) != 0:  # data-parallel harnesses: one process reports
        return
    for line in harness.summary(result):
        print(line)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.output}")
        figure = harness.figure({Path(args.checkpoint).name: result}, Path(args.output).with_suffix(".png"))
        if figure is not None:
            print(f"wrote {figure}")


def harness_main(name: str, argv: list[str] | None = None) -> int:
    """The command line of one harness (`eval/<name>.py`)."""
    harness = get_harness(name)
    parser = OneLineParser(prog=name, description=harness.description.replace("%", "%%"))
    _add_harness_arguments(parser, harness)
    return _run(parser, argv, lambda args: _run_harness(harness, args))


def evaluate_main(argv: list[str] | None = None) -> int:
    """`eval/harness.py HARNESS CHECKPOINT [options]`: any registered harness."""
    parser = OneLineParser(prog="harness", description="Run one evaluation harness on a checkpoint; "
                           "`harness.py HARNESS --help` lists its options.")
    sub = parser.add_subparsers(dest="harness", required=True, metavar="HARNESS",
                                parser_class=OneLineParser)
    for harness in registered_harnesses().values():
        _add_harness_arguments(sub.add_parser(harness.name, help=harness.description.replace("%", "%%"),
                                              description=harness.description.replace("%", "%%")), harness)
    return _run(parser, argv, lambda args: _run_harness(get_harness(args.harness), args))


def perplexity_main(argv: list[str] | None = None) -> int:
    return harness_main("perplexity", argv)


def icl_regression_main(argv: list[str] | None = None) -> int:
    return harness_main("icl_regression", argv)


def dynamics_main(argv: list[str] | None = None) -> int:
    return harness_main("dynamics", argv)


def _named(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    return (name, path) if sep else (Path(spec).name, spec)


def compare_main(argv: list[str] | None = None) -> int:
    harnesses = registered_harnesses()
    parser = OneLineParser(
        prog="compare",
        description="Run harnesses over several checkpoints; write comparison.md / comparison.json (tables), one PNG "
                    "per harness and every result JSON under OUTPUT_DIR. Harness options are namespaced: "
                    + ", ".join(f"--{h.option_prefix()}OPTION" for h in harnesses.values()) + ".",
    )
    parser.add_argument("models", nargs="+", help="checkpoints as NAME=FOLDER (or FOLDER, named by its last part)")
    parser.add_argument("--harnesses", nargs="+", choices=list(harnesses), default=list(harnesses),
                        help="harnesses to run; each runs on the checkpoints it applies to (default: all)")
    parser.add_argument("--output_dir", required=True, help="folder for tables, figures and results")
    for harness in harnesses.values():
        add_options(parser, harness.Options, harness.option_prefix())

    def body(args):
        from .compare import compare

        models = dict(_named(spec) for spec in args.models)
        if len(models) != len(args.models):
            raise ValueError("two checkpoints share a name; name them NAME=FOLDER")
        options = {h.name: options_from_args(args, h.Options, h.option_prefix()) for h in harnesses.values()}
        record = compare(models, tuple(args.harnesses), args.output_dir, options, progress=True)
        print((Path(args.output_dir) / "comparison.md").read_text())
        for path in record["figures"]:
            print(f"wrote {path}")

    return _run(parser, argv, body)
