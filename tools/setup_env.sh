#!/usr/bin/env bash
# Set up (or check) the saevit_mm environment: idempotent, safe to run often.
#
#   bash tools/setup_env.sh        # normally called by tools/run.sh
#
# Steps: venv -> torch -> mmcv 2.1.0 (built once from source, CPU ops, C++20
# patch, wheel cached outside the repo) -> the hosts + saevit_mm (editable)
# -> verification. A second run with nothing changed only verifies (seconds).
#
# Variables (all optional):
#   PYTHON          interpreter that creates the venv      (python3)
#   SAEVIT_VENV     the virtual environment                (<repo>/.venv)
#   SAEVIT_CACHE    where the mmcv wheel is kept           (~/.cache/saevit_mm)
#   TORCH_SPEC      the torch build to install (GPU users: e.g. the same pins
#                   plus TORCH_INDEX_URL of their CUDA build)
#                                        (torch==2.14.1 torchvision==0.29.1)
#   TORCH_INDEX_URL extra index for TORCH_SPEC              (none)
#   MAX_JOBS        compile jobs for mmcv                   (nproc)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
SAEVIT_VENV="${SAEVIT_VENV:-$REPO/.venv}"
SAEVIT_CACHE="${SAEVIT_CACHE:-$HOME/.cache/saevit_mm}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-}"
MMCV_VERSION=2.1.0
STEP="start"
T0=$(date +%s)

say() { printf '[setup %4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
fail() {
  printf '\n[setup] FAILED at step "%s": %s\n' "$STEP" "$*" >&2
  exit 1
}
trap 'fail "command exited with status $? (line $LINENO); see the output above"' ERR

# Everything that decides what gets installed: a change re-runs the installs.
stamp_of() {
  cat "$REPO/setup.py" "$REPO"/requirements/*.txt "$REPO/tools/setup_env.sh" \
    | { cat; echo "$TORCH_SPEC $TORCH_INDEX_URL $MMCV_VERSION"; } \
    | sha256sum | cut -c1-16
}

STEP="python"
command -v "$PYTHON" >/dev/null || fail "no '$PYTHON' on PATH; install Python 3.10 or 3.11 (set PYTHON=...)"
"$PYTHON" - <<'EOF' || fail "Python 3.10 or 3.11 is required (mmengine 0.10.7 needs distutils, gone in 3.12)"
import sys
sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 11) else 1)
EOF

STEP="venv"
if [ ! -x "$SAEVIT_VENV/bin/python" ]; then
  say "creating the virtual environment $SAEVIT_VENV"
  "$PYTHON" -m venv "$SAEVIT_VENV" || fail "python -m venv failed (Debian: apt-get install python3-venv)"
fi
PY="$SAEVIT_VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check --no-input)
STAMP_FILE="$SAEVIT_VENV/.saevit_mm_setup"
STAMP="$(stamp_of)"

verify() {
  "$PY" - <<'EOF'
import torch
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
_, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
if keep.tolist() != [0, 2]:
    raise SystemExit(f'mmcv.ops.nms on CPU gave {keep.tolist()}, expected [0, 2]')
import mmdet.models, mmseg.models, mmpretrain.models  # noqa: F401,E401
import saevit_mm
print(f'[setup] verified: torch {torch.__version__}, mmcv.ops.nms on CPU, '
      f'mmdet/mmseg/mmpretrain models import, saevit_mm {saevit_mm.__version__}')
EOF
}

if [ -f "$STAMP_FILE" ] && [ "$(cat "$STAMP_FILE")" = "$STAMP" ]; then
  STEP="verify"
  say "environment up to date ($SAEVIT_VENV); verifying"
  if verify; then exit 0; fi
  say "verification failed: re-running the installs"
fi

STEP="torch"
say "installing build tools and torch ($TORCH_SPEC)"
# shellcheck disable=SC2086
"${PIP[@]}" install -q "setuptools<82" wheel ninja psutil $TORCH_SPEC \
  ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
  || fail "pip could not install $TORCH_SPEC"

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

STEP="hosts"
say "installing mmcv, mmengine, mmpretrain, mmdet, mmsegmentation and saevit_mm (editable)"
# one resolver run: the mmcv pin of requirements/mminstall.txt is met by the
# local wheel, never by a build from PyPI's sdist
"${PIP[@]}" install -q ${MMCV_WHEEL:+"$MMCV_WHEEL"} -e "$REPO[all,tests]" \
  || fail "pip could not install the hosts"
"${PIP[@]}" install -q "setuptools<82" || fail "pip could not pin setuptools<82"

STEP="verify"
verify || fail "the installed stack does not work (message above)"
echo "$STAMP" > "$STAMP_FILE"
say "done"
