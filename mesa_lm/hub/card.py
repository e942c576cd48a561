"""Model cards: a README with YAML metadata (model-index results from the harness JSON), the layer mix, the training
setup and how to load the model."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..evaluation.loading import is_regression_config

TAGS = ["mesa-lm", "mesa-layer", "linear-attention", "custom_code"]


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def load_results(paths: list[str]) -> list[dict]:
    """Harness results from result files or from a comparison folder's `comparison.json` (its result files)."""
    results = []
    for path in map(Path, paths):
        if path.is_dir():
            path = path / "comparison.json"
        if not path.is_file():
            raise ValueError(f"results file {str(path)!r} does not exist")
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"results file {str(path)!r} is not JSON ({error.msg})")
        if "harness" in record:
            results.append(record)
        elif "results" in record:  # a comparison: its per-model result files
            results.extend(json.loads(Path(p).read_text()) for p in record["results"])
        else:
            raise ValueError(f"results file {str(path)!r} is neither a harness result nor a comparison")
    return results


def _belongs(result: dict, model_dir: Path) -> bool:
    path = result.get("model", {}).get("path")
    return path is None or Path(path).resolve() == model_dir.resolve()


def eval_results(results: list[dict], model_name: str) -> list[EvalResult]:
    """model-index entries: perplexity and ICL score; few-shot error at d examples and last; mean next-step error."""
    entries = []
    for r in results:
        if r["harness"] == "perplexity":
            source = r["data"]["source"]
            name, _, split = source.partition(":")
            common = dict(task_type="text-generation", dataset_type=name, dataset_name=name, dataset_split=split or None)
            entries.append(EvalResult(metric_type="perplexity", metric_value=round(r["perplexity"], 4), **common))
            if r["icl_score"] is not None:
                early, late = r["icl_positions"]
                entries.append(
                    EvalResult(metric_type="icl_score", metric_name=f"ICL score (loss@{late} - loss@{early})",
                               metric_value=round(r["icl_score"], 4), **common)
                )
        elif r["harness"] == "icl_regression":
            d, last = r["dim"], r["pairs"] - 1
            dataset = f"{r['task']}_regression_d{d}"
            for fmt in r["formats"]:
                curve = r["curves"][f"model/{fmt}"]["normalised"]["mean"]
                for k in sorted({min(d, last), last}):
                    entries.append(
                        EvalResult(task_type="few-shot-regression", dataset_type=dataset, dataset_name=dataset,
                                   metric_type="normalised_error", metric_name=f"normalised error, {fmt}, k={k}",
                                   metric_value=round(curve[k], 4))
                    )
        elif r["harness"] == "dynamics":
            dataset = f"{r['dynamics']}_dynamics_d{r['state_dim']}"
            entries.append(
                EvalResult(task_type="next-step-prediction", dataset_type=dataset, dataset_name=dataset,
                           metric_type="mse", metric_name="mean next-step error 1/2||e||^2",
                           metric_value=round(r["mean_error"]["model"], 5))
            )
    return entries


def _architecture(config) -> str:
    mixers = list(config.mixer_types)
    lines = [
        f"- layers: {len(mixers)}, mix: {' -> '.join(mixers)}",
        f"- width {config.hidden_size}, {config.num_attention_heads} heads of key size {config.head_dim}, "
        f"MLP {config.mlp_type}, norm {config.norm_type}, positions {config.position_type}",
    ]
    if "mesa" in mixers:
        lines.append(f"- mesa regulariser: {config.mesa_lambda_type} (init {config.mesa_lambda_init}), "
                     f"gate {config.mesa_gate}, q/k L2-norm {config.mesa_qk_norm}")
    if "linear" in mixers:
        lines.append(f"- linear attention feature map: {config.linear_feature_map}, q/k L2-norm {config.linear_qk_norm}")
    if config.vocab_size:
        lines.append(f"- vocabulary {config.vocab_size}, context {config.max_position_embeddings}")
    else:
        lines.append(f"- real-valued inputs of dimension {config.input_dim} (read-in {config.read_in}), predictions of "
                     f"dimension {config.output_dim} (read-out {config.read_out})")
    return "\n".join(lines)


def _training(model_dir: Path) -> str:
    args, results = _read_json(model_dir / "train_args.json"), _read_json(model_dir / "train_results.json")
    if args is None:
        return "No training record (`train_args.json`) was found beside the weights."
    task_keys = {
        "text": (),
        "dynamics": ("dynamics", "tokens", "state_dim", "seq_len", "noise_std"),
    }.get(args.get("task"), ("state_dim", "num_pairs", "noise_std", "input_distribution"))
    keys = ("preset", "task", *task_keys, "max_steps", "per_device_train_batch_size", "learning_rate",
            "lr_scheduler_type", "warmup_steps", "weight_decay", "seed")
    lines = [f"- {k}: `{args[k]}`" for k in keys if args.get(k) is not None]
    if args.get("task") == "text":
        source = args.get("train_file") or args.get("dataset_name") or "stdlib docstrings (embedded corpus)"
        lines.append(f"- text: {source}, block size {args.get('block_size')}")
    if results:
        lines.append(f"- final eval loss: {results.get('eval_loss', float('nan')):.4f} after {results.get('steps')} "
                     f"steps on {results.get('num_processes')} process(es)")
    return "\n".join(lines) + "\n\nTrained with `train_lm.py` of mesa-lm."


def _results_table(entries: list[EvalResult]) -> str:
    if not entries:
        return "No evaluation results were given."
    lines = ["| task | data | metric | value |", "| --- | --- | --- | --- |"]
    for e in entries:
        lines.append(f"| {e.task_type} | {e.dataset_name} | {e.metric_name or e.metric_type} | {e.metric_value} |")
    return "\n".join(lines)


def _usage(repo: str, regression: bool) -> str:
    if regression:
        return (
            "```python\nimport torch\nfrom mesa_lm import MesaForCausalRegression\n\n"
            f"model = MesaForCausalRegression.from_pretrained(\"{repo}\")\n"
            "predictions = model(inputs=torch.randn(1, 50, model.config.input_dim)).predictions\n```"
        )
    return (
        "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f"tokenizer = AutoTokenizer.from_pretrained(\"{repo}\")\n"
        f"model = AutoModelForCausalLM.from_pretrained(\"{repo}\", trust_remote_code=True)\n"
        "ids = tokenizer(\"Return the\", return_tensors=\"pt\").input_ids\n"
        "print(tokenizer.decode(model.generate(ids, max_new_tokens=20)[0]))\n```\n\n"
        "The model's code travels with the weights (`trust_remote_code=True`); with `mesa_lm` installed, "
        "`import mesa_lm` registers the classes and `trust_remote_code` is not needed."
    )


def hub_card(
    model_dir: str,
    results: list[str] | None = None,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    output: str | None = None,
) -> ModelCard:
    """Write `README.md` (or `output`) for the model in `model_dir` and return the card.

    `results` are harness result files or comparison folders; results of other checkpoints are ignored.
    """
    from transformers import AutoConfig

    import mesa_lm  # noqa: F401  registers the config class

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise ValueError(f"model_dir {model_dir!r} is not a model folder (no config.json in it)")
    config = AutoConfig.from_pretrained(folder)
    if getattr(config, "model_type", None) != "mesa":
        raise ValueError(f"model_dir {model_dir!r} holds a {config.model_type!r} model; hub_card describes mesa models")
    regression = is_regression_config(config)
    mine = [r for r in load_results(results or []) if _belongs(r, folder)]
    name = repo_id or folder.resolve().name
    entries = eval_results(mine, name)
    args = _read_json(folder / "train_args.json") or {}
    datasets = ["stdlib_docstrings"] if args.get("task") == "text" and not args.get("dataset_name") else []
    if args.get("dataset_name"):
        datasets = [args["dataset_name"]]
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag=None if regression else "text-generation",
        tags=TAGS + (["in-context-regression"] if regression else []),
        datasets=datasets or None,
        license=license,
        model_name=name,
        eval_results=entries or None,
    )
    body = "\n\n".join(
        [
            f"# {name}",
            ("A mesa-lm model: a Transformer whose layers mix softmax attention, linear attention and mesa layers "
             "(the mesa layer solves an in-context ridge regression exactly; von Oswald et al. 2023, 2025)."),
            "## Architecture\n\n" + _architecture(config),
            "## Training\n\n" + _training(folder),
            "## Evaluation\n\n" + _results_table(entries),
            "## How to load\n\n" + _usage(name, regression),
        ]
    )
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")
    card.save(output or folder / "README.md")
    return card
