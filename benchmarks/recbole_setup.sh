#!/usr/bin/env bash
# A separate virtual environment with RecBole 1.2.1 for benchmarks/recbole_run.py.
#
#   bash benchmarks/recbole_setup.sh [VENV]      # VENV default: .venv-recbole in the repo root
#   PY=$(bash benchmarks/recbole_setup.sh)       # progress goes to stderr, the python path to stdout
#
# RecBole 1.2.1 (2023) does not run on current numpy/scipy/pandas, so it gets its own venv with
# older pins; nasp's own environment is not touched. Idempotent: a venv whose stamp file holds the
# same pins and that imports recbole is left as it is. PYTHON=... picks the interpreter (3.11 by
# default: the CPU build of torch 2.13.0 that pip finds on this machine's disk is for 3.11).
#
# Why each pin (each was tried; see the selftest, benchmarks/recbole_selftest.py):
#   torch==2.13.0       the CPU build on local disk; an unpinned torch pulls a ~5.5 GB CUDA build.
#                       RecBole needs only torch>=1.10. torch>=2.6 loads checkpoints with
#                       weights_only=True, which refuses RecBole's; recbole_run.py sets
#                       TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for its own checkpoint instead of
#                       pinning an older torch (none is on disk).
#   numpy==1.26.4       < 2: RecBole's Config.compatibility_settings() assigns np.float_,
#                       np.complex_, np.unicode_ (removed in numpy 2.0: AttributeError on every
#                       run); 1.26.4 is the last 1.x. (The np.float the MRR metric uses is one of
#                       the aliases that shim restores, so numpy 1.24+ is fine.)
#   scipy==1.12.0       < 1.13: LightGCN (and NGCF, GCMC, NCL, SpectralCF, ...) build their graph
#                       with dok_matrix._update, which scipy 1.13 removed (AttributeError:
#                       'dok_matrix' object has no attribute '_update'; seen with 1.15.3).
#                       1.12.0 is the last release that has it; it is built for numpy 1.x.
#   pandas==2.3.3       < 3: under pandas 3's copy-on-write RecBole's
#                       feat[field].fillna(value=0, inplace=True) is a silent no-op
#                       (ChainedAssignmentError warning, missing values would stay NaN); 2.3.3,
#                       the last 2.x, fills them (FutureWarning only). Our files have no missing
#                       ids, so the numbers were the same with pandas 3.0.0 in a 2-epoch check.
#   colorlog==4.7.2, colorama==0.4.4     RecBole's own exact pins.
#   scikit-learn==1.7.2, tensorboard==2.21.0, tqdm, pyyaml, texttable, tabulate, psutil, thop:
#                       RecBole's other requirements at the versions tested (tensorboard is needed:
#                       recbole.utils imports torch.utils.tensorboard.SummaryWriter).
#   not installed:      ray<=2.6.3 and plotly (hyper-parameter tuning and recbole.quick_start, which
#                       recbole_run.py does not use) and the hyperopt extra; so `pip check` names
#                       ray and plotly as missing. recbole itself goes in with --no-deps.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${RECBOLE_VENV:-$ROOT/.venv-recbole}}"
PYTHON="${PYTHON:-python3.11}"

PINS=(
  "torch==2.13.0"
  "numpy==1.26.4"
  "scipy==1.12.0"
  "pandas==2.3.3"
  "colorlog==4.7.2"
  "colorama==0.4.4"
  "scikit-learn==1.7.2"
  "tensorboard==2.21.0"
  "tqdm==4.70.1"
  "pyyaml==6.0.4"
  "texttable==1.7.2"
  "tabulate==0.10.0"
  "psutil==7.2.2"
  "thop==0.1.1.post2209072238"
)
RECBOLE="recbole==1.2.1"
STAMP="$VENV/.recbole-pins"
WANT="$(printf '%s\n' "${PINS[@]}" "$RECBOLE")"

log() { echo "recbole_setup: $*" >&2; }

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
   && "$VENV/bin/python" -c "import recbole, torch, numpy, scipy, pandas" 2>/dev/null; then
  log "up to date: $VENV"
  echo "$VENV/bin/python"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PYTHON" >/dev/null || { log "no $PYTHON found (set PYTHON=...)"; exit 1; }
  log "creating $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
rm -f "$STAMP"
# torch first and alone, so that nothing later can ask for another build of it
log "installing torch==2.13.0"
"${PIP[@]}" "torch==2.13.0"
log "installing pinned dependencies"
"${PIP[@]}" "${PINS[@]}"
log "installing $RECBOLE (--no-deps)"
"${PIP[@]}" --no-deps "$RECBOLE"
"$VENV/bin/python" - <<'EOF' >&2
import numpy, pandas, scipy, torch, recbole
from recbole.config import Config  # noqa: F401  (imports the model zoo's common modules)
print(f"recbole_setup: recbole {recbole.__version__}, torch {torch.__version__}, numpy {numpy.__version__}, "
      f"scipy {scipy.__version__}, pandas {pandas.__version__}")
EOF
printf '%s\n' "$WANT" > "$STAMP"
echo "$VENV/bin/python"
