"""The reproduce command end to end at the smoke budget: every experiment runs and reports claim, measurement and
verdict (at this budget no claim is expected to hold), and the report is readable without the code."""

import json

from mesa_lm.reproduce.__main__ import main
from mesa_lm.reproduce.report import VERDICTS


def test_smoke_run_writes_report_results_figures_and_models(tmp_path):
    out = tmp_path / "report"
    assert main(["--budget", "smoke", "--only", "p1_linear1,p1_mesa1,p2,language", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results] == ["p1_linear1", "p1_mesa1", "p2", "language"]
    for result in results:
        assert result["claims"], result["name"]
        for claim in result["claims"]:
            assert claim["verdict"] in VERDICTS and claim["verdict"] != "not run", claim
            assert claim["claim"] in report and claim["measured"]
        for figure in result["figures"]:
            assert (out / figure).is_file(), figure  # figure paths are absolute or relative to out
    # trained models are folders from_pretrained loads
    assert (out / "models" / "linear-1" / "model.safetensors").is_file()
    assert (out / "models" / "lm-hybrid-mesa-2" / "tokenizer.json").is_file()

    # rerunning one experiment into the same folder replaces it and keeps the others, in the usual order
    before = {r["name"]: r for r in results}
    assert main(["--budget", "smoke", "--only", "p1_linear1", "--out", str(out)]) == 0
    rerun = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in rerun] == ["p1_linear1", "p1_mesa1", "p2", "language"]
    assert [r for r in rerun if r["name"] != "p1_linear1"] == [before[n] for n in ("p1_mesa1", "p2", "language")]
    assert rerun[0]["seconds"] != before["p1_linear1"]["seconds"]
    report = (out / "report.md").read_text()
    assert "Kept from the earlier report in this folder: p1_mesa1, p2, language." in report
    assert all(claim["claim"] in report for r in rerun for claim in r["claims"])


def test_unknown_experiment_is_a_one_line_error(tmp_path, capsys):
    assert main(["--only", "p3", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown experiment(s) p3" in err
