"""Fetch transformers' common tests from the sdist of the *installed* transformers, once per version.

    python -m tests.upstream.fetch            # fetch (if needed) and print the folder

The sdist (`pip download --no-deps --no-binary :all: transformers==X`) ships only the top-level `tests/*.py` files.
They are extracted into `<cache>/transformers-X/hf_upstream_tests/` and imported as the package `hf_upstream_tests`
(not `tests`, which is this repository's own test package). Modules that `test_modeling_common.py` and
`test_configuration_common.py` import but the sdist does not ship are replaced by `_shims` (see there).
`parameterized`, which `test_modeling_common.py` imports, is used if installed, else its wheel is fetched into the
cache too.

Cache: `$MESA_LM_UPSTREAM_CACHE`, else `$XDG_CACHE_HOME/mesa_lm/upstream_tests`, else
`~/.cache/mesa_lm/upstream_tests`. (`$MESA_LM_CACHE` is not used: the test session points it at a temporary folder.)
Extraction goes to a temporary folder renamed into place, so concurrent runs never see half a tree.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

PACKAGE = "hf_upstream_tests"
# What the common tests need from the sdist's tests/ folder (everything top-level is small; take it all).
_WANTED_PREFIX = "tests/"
PARAMETERIZED_REQUIREMENT = "parameterized>=0.9"


class UpstreamTestsUnavailable(RuntimeError):
    """The upstream tests could not be fetched or imported; the message is one line saying why."""


def cache_root() -> Path:
    if os.environ.get("MESA_LM_UPSTREAM_CACHE"):
        return Path(os.environ["MESA_LM_UPSTREAM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mesa_lm" / "upstream_tests"


def installed_transformers_version() -> str:
    return importlib.metadata.version("transformers")


def _pip_download(args: list[str], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "--retries", "2"]
    cmd += ["--timeout", "30", "-d", str(dest)]
    try:
        proc = subprocess.run(cmd + args, check=False, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UpstreamTestsUnavailable(f"`pip download {' '.join(args)}` could not run: {exc}") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise UpstreamTestsUnavailable(f"`pip download {' '.join(args)}` failed (no network to PyPI?): {last}")


def _extract_tests(sdist: Path, target: Path) -> None:
    with tarfile.open(sdist) as tar:
        members = []
        for member in tar.getmembers():
            parts = member.name.split("/", 1)  # "transformers-X/tests/..."
            if len(parts) == 2 and parts[1].startswith(_WANTED_PREFIX) and member.isfile():
                rel = parts[1][len(_WANTED_PREFIX) :]
                if rel and ".." not in Path(rel).parts:
                    members.append((member, rel))
        if not any(rel == "test_modeling_common.py" for _, rel in members):
            raise UpstreamTestsUnavailable(f"{sdist.name} has no tests/test_modeling_common.py")
        for member, rel in members:
            out = target / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
    # The sdist has no tests/__init__.py; the package needs one (test_configuration_common also reads it).
    init = target / "__init__.py"
    if not init.exists():
        init.write_text("")


def fetch(version: str | None = None) -> Path:
    """The folder holding the extracted upstream tests package for `version` (default: installed); fetch if needed."""
    version = version or installed_transformers_version()
    root = cache_root() / f"transformers-{version}"
    package_dir = root / PACKAGE
    if (package_dir / "test_modeling_common.py").is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        tmp = Path(tmp)
        _pip_download(["--no-binary", ":all:", f"transformers=={version}"], tmp)
        sdists = sorted(tmp.glob("transformers-*.tar.gz"))
        if not sdists:
            raise UpstreamTestsUnavailable(f"pip downloaded no transformers-{version} sdist into {tmp}")
        staging = tmp / PACKAGE
        _extract_tests(sdists[0], staging)
        try:
            os.replace(staging, package_dir)
        except OSError:
            if not (package_dir / "test_modeling_common.py").is_file():  # not a concurrent run that won the race
                raise
    return root


def _ensure_parameterized() -> None:
    try:
        import parameterized  # noqa: F401

        return
    except ImportError:
        pass
    wheel_dir = cache_root() / "wheels"
    wheels = sorted(wheel_dir.glob("parameterized-*.whl"))
    if not wheels:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=wheel_dir, prefix=".download-") as tmp:
            _pip_download(["--only-binary", ":all:", PARAMETERIZED_REQUIREMENT], Path(tmp))
            for wheel in Path(tmp).glob("parameterized-*.whl"):
                os.replace(wheel, wheel_dir / wheel.name)
        wheels = sorted(wheel_dir.glob("parameterized-*.whl"))
    if not wheels:
        raise UpstreamTestsUnavailable(f"no wheel for {PARAMETERIZED_REQUIREMENT} could be fetched into {wheel_dir}")
    sys.path.append(str(wheels[-1]))  # a pure-Python wheel imports from the zip
    importlib.invalidate_caches()
    import parameterized  # noqa: F401


def load() -> tuple[types.ModuleType, types.ModuleType]:
    """Fetch if needed and import `(test_modeling_common, test_configuration_common)` of the installed transformers."""
    try:
        root = fetch()
        _ensure_parameterized()
        package_dir = root / PACKAGE
        if PACKAGE not in sys.modules:
            sys.path.insert(0, str(root))
            importlib.invalidate_caches()
            from . import _shims

            _shims.install(PACKAGE, package_dir)
        modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
        configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    except UpstreamTestsUnavailable:
        raise
    except Exception as exc:  # an import error in the upstream files: name it on one line
        raise UpstreamTestsUnavailable(
            f"importing transformers' common tests failed: {type(exc).__name__}: {exc}".replace("\n", " ")
        ) from exc
    return modeling, configuration


def main() -> int:
    try:
        root = fetch()
        _ensure_parameterized()
    except UpstreamTestsUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(root / PACKAGE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
