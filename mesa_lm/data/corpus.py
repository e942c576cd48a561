"""The embedded default text corpus: the English docstrings of the Python standard library.

It exists on every machine with Python, needs no download, and is extracted with `ast` at first use, cached as a
text file, and split into train and validation deterministically (by a hash of each docstring).
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import sysconfig
from pathlib import Path

from ..cache import cache_dir

MIN_CHARS = 80
VALIDATION_PER_MILLE = 50  # 5% of the docstrings
RECORD_SEPARATOR = "\n\x1e\n"  # between docstrings in the cache file


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"}
    files = [p for p in root.rglob("*.py") if not skip.intersection(p.relative_to(root).parts)]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _is_english_prose(text: str) -> bool:
    letters = sum(c.isalpha() for c in text)
    return text.isascii() and len(text) >= MIN_CHARS and letters > 0.6 * len(text.replace(" ", ""))


def extract_docstrings() -> list[str]:
    """Module, class and function docstrings of the standard library, in a fixed order, without duplicates."""
    seen, docs = set(), []
    for path in _stdlib_files():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and _is_english_prose(doc) and doc not in seen:
                    seen.add(doc)
                    docs.append(doc.strip())
    return docs


def _is_validation(doc: str) -> bool:
    return int(hashlib.sha1(doc.encode()).hexdigest(), 16) % 1000 < VALIDATION_PER_MILLE


def stdlib_docstrings(split: str) -> list[str]:
    """The `train` or `validation` split, read from the cache or extracted (and cached) at first use."""
    if split not in ("train", "validation"):
        raise ValueError(f"unknown split {split!r}; allowed: train, validation")
    version = f"py{sys.version_info.major}.{sys.version_info.minor}"
    path = cache_dir() / f"stdlib_docstrings-{version}.txt"
    if path.exists():
        docs = path.read_text(encoding="utf-8").split(RECORD_SEPARATOR)
    else:
        docs = extract_docstrings()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(RECORD_SEPARATOR.join(docs), encoding="utf-8")
        os.replace(tmp, path)  # atomic, so a concurrent first use never reads half a file
    return [d for d in docs if _is_validation(d) == (split == "validation")]
