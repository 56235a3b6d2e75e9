#!/usr/bin/env bash
# Set up (or check) a saevit_mm environment: idempotent, safe to run often.
#
#   bash tools/setup_env.sh                        # the reference stack
#   SAEVIT_STACK=classic bash tools/setup_env.sh   # torch 2.1 + numpy 1.24
#
# Normally called by tools/run.sh. Steps: venv -> torch -> mmcv 2.1.0 (built
# once from source with CPU ops, wheel cached outside the repo) -> the user's
# OpenMMLab stack (mmengine, mmpretrain, mmdet, mmsegmentation, test tools) ->
# saevit_mm itself, installed the way a user adds a plugin
# (`pip install -e .`), checked to change none of the stack's packages ->
# verification. A second run with nothing changed only verifies (seconds).
#
# The exact versions of each stack are in requirements/constraints/<stack>.txt;
# the package itself declares ranges (requirements/*.txt).
#
# Variables (all optional):
#   SAEVIT_STACK    reference | classic                     (reference)
#   PYTHON          interpreter that creates the venv      (python3)
#   SAEVIT_CACHE    mmcv wheels and the classic venv       (~/.cache/saevit_mm)
#   SAEVIT_VENV     the virtual environment   (reference: <repo>/.venv,
#                                   classic: $SAEVIT_CACHE/venvs/classic)
#   TORCH_INDEX_URL extra index for torch (GPU users: their CUDA build)
#   MAX_JOBS        compile jobs for mmcv                   (nproc)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
SAEVIT_STACK="${SAEVIT_STACK:-reference}"
SAEVIT_CACHE="${SAEVIT_CACHE:-$HOME/.cache/saevit_mm}"
CONSTRAINTS="$REPO/requirements/constraints/$SAEVIT_STACK.txt"
case "$SAEVIT_STACK" in
  reference) SAEVIT_VENV="${SAEVIT_VENV:-$REPO/.venv}" ;;
  classic) SAEVIT_VENV="${SAEVIT_VENV:-$SAEVIT_CACHE/venvs/classic}" ;;
  *) echo "[setup] SAEVIT_STACK must be 'reference' or 'classic', got '$SAEVIT_STACK'" >&2; exit 2 ;;
esac
TORCH_INDEX_URL="${TORCH_INDEX_URL:-}"
STEP="start"
T0=$(date +%s)

say() { printf '[setup %s %4ss] %s\n' "$SAEVIT_STACK" "$(($(date +%s) - T0))" "$*"; }
fail() {
  printf '\n[setup %s] FAILED at step "%s": %s\n' "$SAEVIT_STACK" "$STEP" "$*" >&2
  exit 1
}
trap 'fail "command exited with status $? (line $LINENO); see the output above"' ERR

pinned() {  # the version requirements/constraints/<stack>.txt gives a package
  sed -n "s/^$1==\([^ #]*\).*/\1/p" "$CONSTRAINTS"
}
MMCV_VERSION="$(pinned mmcv)"
[ -n "$MMCV_VERSION" ] || fail "$CONSTRAINTS pins no mmcv version"

# Everything that decides what gets installed: a change re-runs the installs.
stamp_of() {
  cat "$REPO/setup.py" "$REPO"/requirements/*.txt "$CONSTRAINTS" "$REPO/tools/setup_env.sh" \
    | { cat; echo "$TORCH_INDEX_URL"; } | sha256sum | cut -c1-16
}

STEP="python"
command -v "$PYTHON" >/dev/null || fail "no '$PYTHON' on PATH; install Python 3.10 or 3.11 (set PYTHON=...)"
"$PYTHON" - <<'PYEOF' || fail "Python 3.10 or 3.11 is required (mmengine 0.10.7 imports distutils, gone in 3.12)"
import sys
sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 11) else 1)
PYEOF

STEP="venv"
if [ ! -x "$SAEVIT_VENV/bin/python" ]; then
  say "creating the virtual environment $SAEVIT_VENV"
  mkdir -p "$(dirname "$SAEVIT_VENV")"
  "$PYTHON" -m venv "$SAEVIT_VENV" || fail "python -m venv failed (Debian: apt-get install python3-venv)"
fi
PY="$SAEVIT_VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check --no-input)
STAMP_FILE="$SAEVIT_VENV/.saevit_mm_setup"
STAMP="$(stamp_of)"

verify() {
  "$PY" - <<'PYEOF'
import torch
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
_, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
if keep.tolist() != [0, 2]:
    raise SystemExit(f'mmcv.ops.nms on CPU gave {keep.tolist()}, expected [0, 2]')
import mmdet.models, mmseg.models, mmpretrain.models  # noqa: F401,E401
import numpy
import saevit_mm
print(f'[setup] verified: torch {torch.__version__}, numpy {numpy.__version__}, '
      'mmcv.ops.nms on CPU, mmdet/mmseg/mmpretrain models import, '
      f'saevit_mm {saevit_mm.__version__}')
PYEOF
}

if [ -f "$STAMP_FILE" ] && [ "$(cat "$STAMP_FILE")" = "$STAMP" ]; then
  STEP="verify"
  say "environment up to date ($SAEVIT_VENV); verifying"
  if verify; then exit 0; fi
  say "verification failed: re-running the installs"
fi

STEP="torch"
say "installing build tools and torch ($(pinned torch)), torchvision ($(pinned torchvision))"
"${PIP[@]}" install -q -c "$CONSTRAINTS" "setuptools<82" wheel ninja psutil torch torchvision \
  ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
  || fail "pip could not install torch and torchvision as $CONSTRAINTS pins them"

STEP="mmcv"
MMCV_WHEEL=""
if "$PY" -c "import mmcv, sys; from mmcv.ops import nms; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
  say "mmcv $MMCV_VERSION with ops already installed"
else
  KEY="$("$PY" -c "import sys, torch; print(f'mmcv$MMCV_VERSION-torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-' + ('cuda' if torch.cuda.is_available() or '${FORCE_CUDA:-0}' == '1' else 'cpu'))")"
  WHEEL_DIR="$SAEVIT_CACHE/wheels/$KEY"
  MMCV_WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)"
  if [ -z "$MMCV_WHEEL" ]; then
    bash "$REPO/tools/build_mmcv.sh" "$PY" "$MMCV_VERSION" "$WHEEL_DIR" \
      || fail "building mmcv $MMCV_VERSION from source failed (log above)"
    MMCV_WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)"
  else
    say "reusing the cached mmcv wheel $MMCV_WHEEL"
  fi
fi

STEP="stack"
say "installing the OpenMMLab stack: mmcv, mmengine, mmpretrain, mmdet, mmsegmentation, test tools"
# one resolver run: the mmcv requirement is met by the local wheel, never by a
# build of PyPI's sdist
"${PIP[@]}" install -q -c "$CONSTRAINTS" ${MMCV_WHEEL:+"$MMCV_WHEEL"} \
  -r "$REPO/requirements/runtime.txt" -r "$REPO/requirements/mminstall.txt" \
  -r "$REPO/requirements/cls.txt" -r "$REPO/requirements/det.txt" \
  -r "$REPO/requirements/seg.txt" -r "$REPO/requirements/tests.txt" \
  || fail "pip could not install the OpenMMLab stack of $CONSTRAINTS"

STEP="saevit_mm"
say "installing saevit_mm as a user adds a plugin: pip install -e ."
# --all: setuptools too (install_requires caps it); a local wheel (our mmcv)
# is frozen as "mmcv @ file:///...", a PyPI one as "mmcv==2.1.0"
USER_STACK='torch|torchvision|mmcv|mmengine|numpy|mmpretrain|mmdet|mmsegmentation'
stack_of() { grep -iE "^($USER_STACK)(==| @ )" | sed -E 's| @ .*/([^/#]+)(#.*)?$| @ \1|'; }
BEFORE="$("${PIP[@]}" freeze --all --exclude-editable | sort)"
"${PIP[@]}" install -q -e "$REPO" || fail "pip install -e $REPO failed"
AFTER="$("${PIP[@]}" freeze --all --exclude-editable | sort)"
CHANGED="$(diff <(echo "$BEFORE") <(echo "$AFTER") | sed -n 's/^[<>] //p' || true)"
if [ -n "$(echo "$CHANGED" | stack_of)" ]; then
  fail "installing saevit_mm changed the user's stack:
$(diff <(echo "$BEFORE") <(echo "$AFTER") || true)"
fi
[ -z "$CHANGED" ] || say "note: installing saevit_mm changed: $(echo "$CHANGED" | tr '\n' ' ')"
say "pip install -e . left the stack as it was: $(echo "$AFTER" | stack_of | tr '\n' ' ')"

STEP="verify"
verify || fail "the installed stack does not work (message above)"
echo "$STAMP" > "$STAMP_FILE"
say "done"
