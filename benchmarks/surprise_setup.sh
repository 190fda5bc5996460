#!/usr/bin/env bash
# A separate virtual environment with Surprise (scikit-surprise) for benchmarks/surprise_run.py.
#
#   bash benchmarks/surprise_setup.sh [VENV]     # VENV default: .venv-surprise in the repo root
#
# Surprise's Cython extensions build against numpy 1.x (numpy<2 pinned); nasp's own environment
# is not touched. Idempotent: a venv that imports surprise is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-surprise}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import surprise" 2>/dev/null; then
  echo "$VENV/bin/python"; exit 0
fi
"${PYTHON:-python3}" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "numpy<2" scikit-surprise >&2
echo "$VENV/bin/python"
