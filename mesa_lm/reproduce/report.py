"""The reproduction report: one section per experiment with the paper's claim, the measurement and a verdict."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

VERDICTS = ("holds", "partly holds", "does not hold", "not run")


@dataclass
class Claim:
    """One checkable statement of a paper, what was measured for it, and whether it holds."""

    claim: str
    measured: str
    verdict: str
    numbers: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


@dataclass
class ExperimentResult:
    name: str
    title: str
    paper: str
    claims: list[Claim]
    figures: list[str] = field(default_factory=list)
    notes: str = ""
    seconds: float = 0.0


def load_results(out: Path) -> dict[str, ExperimentResult]:
    """The experiments of an earlier report in `out` (none if there is no `results.json`), by name."""
    path = out / "results.json"
    if not path.is_file():
        return {}
    results = {}
    for entry in json.loads(path.read_text()):
        entry["claims"] = [Claim(**claim) for claim in entry["claims"]]
        results[entry["name"]] = ExperimentResult(**entry)
    return results


def _relative(figure: str, out: Path) -> str:
    try:
        return Path(figure).resolve().relative_to(out.resolve()).as_posix()
    except ValueError:
        return Path(figure).as_posix()


def verdict(condition: bool, partial: bool = False) -> str:
    return "holds" if condition else ("partly holds" if partial else "does not hold")


def write_report(results: list[ExperimentResult], out: Path, header: str) -> None:
    """`out/report.md` (figures embedded by relative path) and `out/results.json`."""
    lines = [header, "", "| experiment | paper | claims holding | time |", "| --- | --- | --- | --- |"]
    for r in results:
        holding = sum(c.verdict == "holds" for c in r.claims)
        lines.append(f"| [{r.title}](#{r.name}) | {r.paper} | {holding} / {len(r.claims)} | {r.seconds:.0f} s |")
    for r in results:
        lines += ["", f"## <a id=\"{r.name}\"></a>{r.title}", ""]
        lines += ["| claim | measured | verdict |", "| --- | --- | --- |"]
        for c in r.claims:
            lines.append(f"| {c.claim} | {c.measured} | **{c.verdict}** |")
        if r.notes:
            lines += ["", r.notes]
        for figure in r.figures:
            lines += ["", f"![{Path(figure).stem}]({_relative(figure, out)})"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2, default=str))
