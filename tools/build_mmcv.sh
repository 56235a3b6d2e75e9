#!/usr/bin/env bash
# Build an mmcv wheel from the PyPI sdist, with compiled ops, for the torch
# installed in the given interpreter. Called by tools/setup_env.sh.
#
#   bash tools/build_mmcv.sh PYTHON VERSION WHEEL_DIR
#
# Two fixes (see DEVELOPERS.md):
# * --no-build-isolation, so torch is visible and the ops are compiled
#   (MMCV_WITH_OPS=1); otherwise mmcv silently builds without `mmcv._ext`;
# * -std=c++17 -> -std=c++20 in setup.py, only where torch's headers refuse
#   C++17 (torch 2.14 does; torch 2.1 builds as mmcv ships).
set -euo pipefail
PY="$1"
VERSION="$2"
WHEEL_DIR="$3"
JOBS="${MAX_JOBS:-$(nproc)}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mmcv-build.XXXXXX")"
LOG="$WORK/build.log"
trap 'rm -rf "$WORK"' EXIT

echo "[mmcv] building mmcv $VERSION with CPU ops (and CUDA ops if torch sees a GPU)."
echo "[mmcv] This happens once per torch/Python version: about 10-25 minutes on 2 cores,"
echo "[mmcv] less on more. The wheel is cached in $WHEEL_DIR."
"$PY" -m pip --disable-pip-version-check download -q --no-deps --no-build-isolation \
  --no-binary :all: "mmcv==$VERSION" -d "$WORK"
tar -xzf "$WORK/mmcv-$VERSION.tar.gz" -C "$WORK"
SRC="$WORK/mmcv-$VERSION"
TORCH_INCLUDE="$("$PY" -c 'from torch.utils.cpp_extension import include_paths; print(include_paths()[0])')"
if grep -qs "C++20 or later compatible compiler is required" "$TORCH_INCLUDE/ATen/ATen.h"; then
  echo "[mmcv] this torch's headers need C++20: building mmcv with -std=c++20"
  sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
  grep -q -- '-std=c++20' "$SRC/setup.py" || { echo "[mmcv] could not patch $SRC/setup.py" >&2; exit 1; }
fi

# CPU sources; a CUDA build compiles the .cu files of pytorch/cuda too
total=$(find "$SRC/mmcv/ops/csrc/pytorch" "$SRC/mmcv/ops/csrc/pytorch/cpu" \
  -maxdepth 1 -name '*.cpp' | wc -l)
(cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS="$JOBS" "$PY" -m pip --disable-pip-version-check \
  wheel -v --no-deps --no-build-isolation -w "$WORK/dist" . >"$LOG" 2>&1) &
pid=$!
start=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
  sleep 60
  # no build/ yet in the first minutes on a busy machine: count 0, go on
  done_objs=$({ find "$SRC/build" -name '*.o' 2>/dev/null || true; } | wc -l)
  printf '[mmcv] %3d/%d C++ sources compiled, %d min elapsed\n' \
    "$done_objs" "$total" "$((($(date +%s) - start) / 60))"
done
if ! wait "$pid"; then
  echo "[mmcv] the build failed; last lines of $LOG:" >&2
  tail -n 40 "$LOG" >&2
  exit 1
fi
mkdir -p "$WHEEL_DIR"
cp "$WORK"/dist/mmcv-"$VERSION"-*.whl "$WHEEL_DIR/"
echo "[mmcv] built $(ls "$WHEEL_DIR") in $((($(date +%s) - start) / 60)) min"
