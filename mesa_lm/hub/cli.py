"""Command line of `eval/hub_card.py` (console script `mesa-hub-card`): write a model card, optionally push."""

from __future__ import annotations

import sys
from pathlib import Path

from ..cli_options import OneLineParser, writable_path
from ..evaluation.cli import quiet_loading


def hub_card_main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="hub_card",
        description="Write README.md (a model card with YAML metadata and the harness results) into a mesa-lm model "
                    "folder; with --push, upload model, tokenizer and card to the Hub (HF_ENDPOINT, HF_TOKEN).",
    )
    parser.add_argument("model_dir", help="the saved model folder (config.json, model.safetensors, ...)")
    parser.add_argument("--results", nargs="*", default=[],
                        help="harness result JSON files or compare output folders; results of this model are used")
    parser.add_argument("--repo_id", default=None, help="Hub repository id, e.g. user/mesa-hybrid (names the card)")
    parser.add_argument("--license", default="apache-2.0", help="license in the card metadata (default: apache-2.0)")
    parser.add_argument("--output", default=None, help="card path (default: MODEL_DIR/README.md)")
    parser.add_argument("--push", action="store_true", help="push model, tokenizer and card to --repo_id")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    args = parser.parse_args(argv)
    quiet_loading()
    try:
        from .card import hub_card

        if args.push and not args.repo_id:
            raise ValueError("--push needs --repo_id")
        writable_path(args.output or str(Path(args.model_dir) / "README.md"), "--output")
        try:
            card = hub_card(args.model_dir, args.results, args.repo_id, args.license, args.output)
        except (KeyError, TypeError, IndexError, AttributeError, OSError) as error:
            # a result file of the right kind but the wrong shape (hand-edited, truncated, from another tool)
            what = f"--results {' '.join(args.results)}: malformed harness result" if args.results else \
                f"model_dir {args.model_dir!r} cannot be read"
            raise ValueError(f"{what} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
        print(f"wrote {args.output or args.model_dir + '/README.md'} ({len(card.data.eval_results or [])} results)")
        if args.push:
            from .push import push_to_hub

            print(f"pushed to {push_to_hub(args.model_dir, args.repo_id, private=args.private)}")
    except ValueError as error:
        print(f"{parser.prog}: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0
