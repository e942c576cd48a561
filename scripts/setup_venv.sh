#!/usr/bin/env bash
# Create a virtual environment (default .venv at the repository root) and install mesa-lm with its training,
# evaluation, test and lm_eval (lm-evaluation-harness) extras, every package at the version pinned in requirements/lock.txt.
#
# torch goes in first, pinned: on the project's machines torch==2.13.0 is a CPU wheel on disk, while an unpinned
# torch would pull a multi-GB CUDA build. The lock also pins pip and the build backend (setuptools), so two runs on
# two machines install the same tree. Refresh the lock deliberately: bash scripts/refresh_lock.sh.
#
# Environment: VENV (folder, default .venv), PYTHON (interpreter that creates it, default python3),
# LOCK (constraints file, default requirements/lock.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
LOCK=${LOCK:-requirements/lock.txt}
source scripts/pip_quiet.sh

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_quiet "$VENV" install -c "$LOCK" pip setuptools
pip_quiet "$VENV" install -c "$LOCK" torch
pip_quiet "$VENV" install -c "$LOCK" --build-constraint "$LOCK" -e ".[train,eval,test,lm_eval]"
"$VENV/bin/python" -c "import mesa_lm, transformers; print('mesa-lm', mesa_lm.__version__, 'with transformers', transformers.__version__, 'ready in $VENV')"
