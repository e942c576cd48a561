#!/usr/bin/env python3
"""Run mesa-lm's model, generation, save/load and short training tests against three dependency sets.

  lock    requirements/lock.txt, exactly (built by scripts/setup_venv.sh)
  floor   the lower bound pyproject.toml declares for each Hugging Face package, everything else resolved by pip
  newest  `pip install --upgrade` of everything within pyproject.toml's ranges, torch excepted

Each set gets a venv under .matrix/ (gitignored). A venv is reused when the lock, pyproject.toml and the requested
pins are unchanged since it was built; `newest` asks the index again every run, so it follows new releases.
The results table goes into docs/compatibility.md between its matrix markers. Exits 1 when any set fails to install
or fails a test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
PYPROJECT = ROOT / "pyproject.toml"
DOC = ROOT / "docs" / "compatibility.md"
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"
EXTRAS = ".[train,eval,test]"
ENVS = ("lock", "floor", "newest")
# Packages whose declared lower bound the floor set installs (and the table reports, with torch).
FLOOR_PACKAGES = ("transformers", "accelerate", "datasets", "tokenizers", "huggingface_hub", "safetensors", "evaluate")
SHOWN = ("transformers", "accelerate", "datasets", "tokenizers", "huggingface_hub", "safetensors", "torch")
DEFAULT_TESTS = (
    "tests/models",
    "tests/training/test_resume.py",
    "tests/training/test_text_training.py",
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def lock_pin(package: str) -> str:
    """The version requirements/lock.txt pins for `package`."""
    for line in LOCK.read_text().splitlines():
        name, _, version = line.partition("==")
        if canonical(name) == canonical(package):
            return version.strip()
    raise SystemExit(f"{LOCK.relative_to(ROOT)} pins no {package}")


def declared_floors() -> dict[str, str]:
    """{package: lower bound} for FLOOR_PACKAGES, read from pyproject.toml's dependencies and extras."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    floors = {}
    for requirement in requirements:
        match = re.match(r"^([A-Za-z0-9_.-]+)\s*(?:\[.*?\])?\s*(.*)$", requirement)
        name, specifiers = canonical(match.group(1)), match.group(2)
        bound = re.search(r">=\s*([^,;\s]+)", specifiers)
        if name in FLOOR_PACKAGES and bound:
            floors[name] = bound.group(1)
    missing = set(FLOOR_PACKAGES) - set(floors)
    if missing:
        raise SystemExit(f"pyproject.toml declares no lower bound for {', '.join(sorted(missing))}")
    return floors


def pip(venv: Path, *args: str) -> None:
    """Run the venv's pip through scripts/pip_quiet.sh (quiet, exit status kept)."""
    script = 'source scripts/pip_quiet.sh && pip_quiet "$@"'
    subprocess.run(["bash", "-c", script, "pip_quiet", str(venv), *args], cwd=ROOT, check=True)


def fingerprint(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in (*parts, LOCK.read_text(), PYPROJECT.read_text()):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def build(env: str, venv: Path, rebuild: bool) -> None:
    """Create or update the venv for `env`; skip the install when its stamp says it is current."""
    torch = f"torch=={lock_pin('torch')}"
    floors = declared_floors()
    spec = {
        "lock": fingerprint("lock"),
        "floor": fingerprint("floor", json.dumps(floors, sort_keys=True)),
        "newest": None,  # never current: the index decides
    }[env]
    stamp = venv / "mesa-matrix.json"
    if rebuild:
        shutil.rmtree(venv, ignore_errors=True)
    if spec is not None and stamp.is_file() and json.loads(stamp.read_text()).get("spec") == spec:
        print(f"{env}: reusing {venv.relative_to(ROOT)}", flush=True)
        return
    print(f"{env}: installing into {venv.relative_to(ROOT)}", flush=True)
    stamp.unlink(missing_ok=True)
    if env == "lock":
        subprocess.run(["bash", "scripts/setup_venv.sh"], cwd=ROOT, check=True,
                       env={**os.environ, "VENV": str(venv)}, stdout=subprocess.DEVNULL)
    else:
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip(venv, "install", "-c", str(LOCK), "pip", "setuptools")
        pip(venv, "install", torch)
        if env == "floor":
            pins = [f"{name}=={version}" for name, version in floors.items()]
            pip(venv, "install", torch, *pins, "-e", EXTRAS)
        else:
            pip(venv, "install", "--upgrade", "--upgrade-strategy", "eager", torch, "-e", EXTRAS)
    stamp.write_text(json.dumps({"spec": spec}))


def versions(venv: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code, *SHOWN], check=True, capture_output=True, text=True)
    found = json.loads(out.stdout)
    found["torch"] = found["torch"].split("+")[0]
    return found


def run_tests(venv: Path, tests: list[str], junit: Path) -> dict:
    """Run pytest on `tests`; counts from its JUnit report (a run that collected nothing counts as failed)."""
    junit.unlink(missing_ok=True)
    started = time.perf_counter()
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={junit}", *tests],
        cwd=ROOT, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - started
    counts = {"passed": 0, "failed": 0, "skipped": 0, "seconds": seconds, "exit": proc.returncode}
    if junit.is_file():
        suites = ET.parse(junit).getroot()
        for suite in suites.iter("testsuite"):
            total, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
            failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            counts["failed"] += failed
            counts["skipped"] += skipped
            counts["passed"] += total - failed - skipped
    if proc.returncode != 0 and counts["failed"] == 0:  # collection errors, no tests, a crash
        counts["failed"] = max(1, counts["failed"])
    if proc.returncode == 5:
        counts["failing"] = [f"pytest collected no tests from {' '.join(tests)}"]
    elif proc.returncode != 0:
        failing = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
        counts["failing"] = failing
    return counts


def cross_version(envs: list[str]) -> tuple[list[str], bool]:
    """Save the four mixes under each set's transformers and load them (through mesa_lm and as remote code) under
    every other set's (scripts/cross_version.py): a table row per pair, and whether all of them generate alike."""
    folders = {}
    for env in envs:
        folder = ROOT / ".matrix" / "cross_version" / env
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([str(ROOT / ".matrix" / env / "bin" / "python"), "scripts/cross_version.py", "save",
                        str(folder)], cwd=ROOT, check=True, capture_output=True, text=True)  # fmt: skip
        folders[env] = folder
    lines = ["| saved under | loaded under | through mesa_lm | as remote code |", "| --- | --- | --- | --- |"]
    ok = True
    for saved in envs:
        for loaded in envs:
            if saved == loaded:
                continue
            results = []
            for extra in ([], ["--remote"]):
                proc = subprocess.run([str(ROOT / ".matrix" / loaded / "bin" / "python"), "scripts/cross_version.py",
                                       "check", str(folders[saved]), *extra],
                                      cwd=ROOT, capture_output=True, text=True)  # fmt: skip
                results.append("same tokens and logits" if proc.returncode == 0 else "DIFFERS")
                ok &= proc.returncode == 0
                if proc.returncode:
                    print(proc.stdout[-2000:] + proc.stderr[-2000:], flush=True)
            lines.append(f"| {saved} | {loaded} | {results[0]} | {results[1]} |")
    return lines, ok


def counts_line(counts: dict) -> str:
    """pytest's wording, so that CI readers of closing lines recognise it."""
    return f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"


def machine() -> str:
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, "
            f"Python {platform.python_version()}")


def table(rows: list[dict], tests: list[str]) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = ["env", *SHOWN, "passed", "failed", "skipped", "time"]
    lines = [
        f"Last run: {when} on {machine()}, `python scripts/compat_matrix.py`; tests: "
        + ", ".join(f"`{t}`" for t in tests) + ".",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    for row in rows:
        if "error" in row:
            cells = [row["env"], *(["?"] * len(SHOWN)), "-", "-", "-", row["error"]]
        else:
            cells = [row["env"], *(row["versions"][p] for p in SHOWN), str(row["passed"]), str(row["failed"]),
                     str(row["skipped"]), f"{row['seconds']:.0f} s"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{DOC.relative_to(ROOT)} lacks the {BEGIN} / {END} markers")
    head, rest = doc.split(BEGIN, 1)
    DOC.write_text(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default=",".join(ENVS),
                        help="comma-separated sets to run, from lock, floor, newest (default: all three)")
    parser.add_argument("--tests", nargs="+", default=list(DEFAULT_TESTS),
                        help="pytest paths to run in each set (default: %(default)s)")
    parser.add_argument("--rebuild", action="store_true", help="delete and rebuild the venvs instead of reusing them")
    parser.add_argument("--no-write", action="store_true",
                        help="print the table only; leave docs/compatibility.md unchanged (also the case when "
                             "--envs names fewer than all three sets)")
    args = parser.parse_args(argv)
    envs = [e.strip() for e in args.envs.split(",") if e.strip()]
    unknown = set(envs) - set(ENVS)
    if unknown:
        parser.error(f"unknown set(s) {', '.join(sorted(unknown))}; choose from {', '.join(ENVS)}")

    rows = []
    for env in envs:
        venv = ROOT / ".matrix" / env
        try:
            build(env, venv, args.rebuild)
        except subprocess.CalledProcessError as error:
            print(f"{env}: install failed ({error})", flush=True)
            rows.append({"env": env, "error": "install failed"})
            continue
        row = {"env": env, "versions": versions(venv)}
        print(f"{env}: transformers {row['versions']['transformers']}, running {len(args.tests)} test path(s)",
              flush=True)
        row.update(run_tests(venv, args.tests, venv / "junit.xml"))
        print(f"{env}: {counts_line(row)} in {row['seconds']:.0f} s", flush=True)
        for line in row.get("failing", [])[:40]:
            print(f"  {line}", flush=True)
        rows.append(row)

    text = table(rows, args.tests)
    ran_envs = [r["env"] for r in rows if "error" not in r]
    crossed = True
    if len(ran_envs) > 1:
        lines, crossed = cross_version(ran_envs)
        text += "\n\nA folder saved under one set, loaded and generated under another (`scripts/cross_version.py`):\n\n"
        text += "\n".join(lines)
    print("\n" + text)
    if args.no_write:
        pass
    elif set(envs) != set(ENVS):
        print(f"\n{DOC.relative_to(ROOT)} left unchanged: its table needs all of {', '.join(ENVS)}")
    else:
        write_doc(text)
        print(f"\nwritten to {DOC.relative_to(ROOT)}")
    ran = [r for r in rows if "error" not in r]
    total = {key: sum(r[key] for r in ran) for key in ("passed", "failed", "skipped")}
    total["failed"] += len(rows) - len(ran)  # a set that did not install counts as a failure
    print(f"matrix: {counts_line(total)}")
    return 0 if crossed and all("error" not in r and r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
