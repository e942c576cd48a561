#!/usr/bin/env bash
# Create .venv at the repository root and install mesa-lm with its training, evaluation and test extras.
# torch is pinned first: on the project's machines torch==2.13.0 is a CPU wheel on disk, while an unpinned
# torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install -q -e ".[train,eval,test]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import mesa_lm, accelerate, datasets, tokenizers; print('mesa-lm', mesa_lm.__version__, 'ready in .venv')"
