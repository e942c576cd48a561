"""Where mesa_lm keeps what it builds or extracts once per machine (the embedded corpus, the compiled kernels)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$MESA_LM_CACHE`, else `$XDG_CACHE_HOME/mesa_lm`, else `~/.cache/mesa_lm`."""
    if os.environ.get("MESA_LM_CACHE"):
        return Path(os.environ["MESA_LM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mesa_lm"
