"""`python -m mesa_lm.reproduce [--quick] [--only NAMES] --out DIR`: train what the papers' claims need (through
train_lm.py's loop), run the analyses and harnesses, and write DIR/report.md, DIR/results.json and the models."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import torch

from ..cli_options import OneLineParser, check_folder_creatable, positive_int
from .budget import LEVELS, Budget
from .experiments import language, p1_depth, p1_fewshot, p1_linear1, p1_mesa1, p1_transformers, p2
from .report import Claim, ExperimentResult, load_results, write_report

EXPERIMENTS = {
    "p1_linear1": p1_linear1.run,
    "p1_mesa1": p1_mesa1.run,
    "p1_depth": p1_depth.run,
    "p1_transformers": p1_transformers.run,
    "p1_fewshot": p1_fewshot.run,
    "p2": p2.run,
    "language": language.run,
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m mesa_lm.reproduce",
        description="Reproduce the claims of [P1] (von Oswald et al.) and [P2] (Zheng et al.): train, analyse, and "
        "write a report with each claim, the measurement and a verdict.",
        allow_abbrev=False,
    )
    parser.add_argument("--out", required=True, help="output folder for report.md, results.json, figures/ and models/ "
                        "(finished models with the same settings are reused, interrupted training resumed)")
    parser.add_argument("--quick", action="store_true",
                        help="short training and evaluation (about 11 min on 2 CPU cores; without it, the full budget)")
    parser.add_argument("--budget", choices=LEVELS, default=None, help="explicit budget level (overrides --quick)")
    parser.add_argument("--only", default=None, help=f"comma-separated experiments to run, from: {', '.join(EXPERIMENTS)} "
                        "(the others' results already in --out are kept in the report)")
    parser.add_argument("--train_file", default=None, help="language experiment: a text file instead of the embedded corpus")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    return parser


def check_options(args: argparse.Namespace) -> list[str]:
    """The experiments to run; every option is checked before anything is written (ValueError, one line)."""
    names = list(EXPERIMENTS) if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--only {args.only!r} names no experiment; choose from {', '.join(EXPERIMENTS)}")
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out!r} is a file; give a folder")
    check_folder_creatable(out, "--out")
    if args.train_file is not None:
        if "language" not in names:
            raise ValueError("--train_file is used by the language experiment only, which --only leaves out")
        from ..data.text import read_text_file

        try:
            read_text_file(args.train_file, "--train_file")
        except UnicodeDecodeError:
            raise ValueError(f"--train_file {args.train_file!r} is not a text file")
    return names


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        names = check_options(args)
    except ValueError as error:
        print(f"reproduce: error: {error}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = Budget(args.budget or ("quick" if args.quick else "full"))
    out = Path(args.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    earlier = load_results(out)  # a rerun of some experiments keeps the others' results in the report
    results: list[ExperimentResult] = []
    failed: list[str] = []
    started = time.time()
    for name in names:
        print(f"[reproduce] {name} ...", flush=True)
        kwargs = {}
        if name == "p1_depth":
            mesa = next((r for r in results if r.name == "p1_mesa1"), earlier.get("p1_mesa1"))
            kwargs["mesa_error"] = mesa.claims[0].numbers.get("model") if mesa else None
        if name == "language":
            kwargs["train_file"] = args.train_file
        try:
            result = EXPERIMENTS[name](out, budget, **kwargs)
        except Exception as error:  # one failing experiment must not lose the others' results
            traceback.print_exc()
            failed.append(name)
            result = ExperimentResult(name, name, "", [Claim("(experiment failed)", f"{type(error).__name__}: {error}",
                                                             "not run")])
        results.append(result)
        print(f"[reproduce] {name}: " + ", ".join(c.verdict for c in result.claims) + f" ({result.seconds:.0f} s)",
              flush=True)
        kept = [r for r in earlier.values() if r.name not in names]
        merged = sorted(results + kept, key=lambda r: list(EXPERIMENTS).index(r.name) if r.name in EXPERIMENTS else 99)
        note = (f" Kept from the earlier report in this folder: {', '.join(r.name for r in kept)}." if kept else "")
        header = (f"# Reproduction report ({budget.level} budget)\n\nGenerated by `python -m mesa_lm.reproduce "
                  f"{' '.join(argv if argv is not None else sys.argv[1:])}` in {time.time() - started:.0f} s.{note} "
                  "Claims are from [P1] von Oswald et al. (arXiv 2309.05858) and [P2] Zheng et al. (arXiv 2405.16845); "
                  "verdicts compare the measurement with the paper's statement, with the thresholds given in the code.")
        write_report(merged, out, header)  # after every experiment, so an interrupted run keeps what it measured
    print(f"[reproduce] report written to {out / 'report.md'}")
    if failed:
        print(f"reproduce: error: experiment(s) {', '.join(failed)} failed (see the traceback above and the report)",
              file=sys.stderr)
        return 1
    return 0


def cli(argv: list[str] | None = None) -> int:
    """`main`, with Ctrl-C ending the whole run (not just the current training) and saying how to resume."""
    try:
        return main(argv)
    except KeyboardInterrupt as stop:
        print(f"\n[reproduce] interrupted{': ' + str(stop) if str(stop) else ''}. Finished experiments are in the "
              "report; the same command again reuses finished models and resumes interrupted training.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(cli())
