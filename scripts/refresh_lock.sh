#!/usr/bin/env bash
# Move the lock forward, deliberately: resolve mesa-lm's extras afresh to the newest releases that pyproject.toml
# allows, write them to requirements/lock.txt, then run the compatibility matrix (lock, floor, newest) and update
# docs/compatibility.md. Review `git diff requirements/ docs/` and commit both together.
#
# torch stays at TORCH_VERSION (default 2.13.0, the CPU wheel on the project's machines): an unpinned torch would
# resolve to a multi-GB CUDA build. CUDA-only packages (nvidia-*, triton) never enter the lock.
# Options: --no-matrix (only rewrite the lock). Environment: PYTHON (default python3), TORCH_VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
RUN_MATRIX=1
case "${1:-}" in
    --no-matrix) RUN_MATRIX=0 ;;
    "") ;;
    *) echo "usage: bash scripts/refresh_lock.sh [--no-matrix]" >&2; exit 2 ;;
esac
source scripts/pip_quiet.sh

VENV=.matrix/resolve
rm -rf "$VENV"
echo "resolving the newest releases in $VENV"
"$PYTHON" -m venv "$VENV"
pip_quiet "$VENV" install --upgrade pip setuptools
pip_quiet "$VENV" install "torch==$TORCH_VERSION"
pip_quiet "$VENV" install "torch==$TORCH_VERSION" ".[train,eval,test,lm_eval]"

{
    echo "# Every package mesa-lm's setup installs (extras train, eval, test, lm_eval), pinned: the resolve of $(date -u +%Y-%m-%d)"
    echo "# on Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())'), $(uname -sm)."
    echo "# Used as pip constraints by scripts/setup_venv.sh (also for the build backend); regenerate with"
    echo "# bash scripts/refresh_lock.sh, never by hand. torch is the CPU wheel's version; no CUDA packages."
    echo "torch==$TORCH_VERSION"
    "$VENV/bin/python" -m pip freeze --all --exclude mesa-lm \
        | grep -viE '^(torch|nvidia-[a-z0-9-]+|triton|cuda-[a-z0-9-]+)==' | LC_ALL=C sort -t= -k1,1f
} > requirements/lock.txt.new
mv requirements/lock.txt.new requirements/lock.txt
rm -rf "$VENV"
echo "wrote requirements/lock.txt: $(grep -c '==' requirements/lock.txt) pins, transformers $(grep -i '^transformers==' requirements/lock.txt | cut -d= -f3)"

if [ "$RUN_MATRIX" = 1 ]; then
    "$PYTHON" scripts/compat_matrix.py
fi
