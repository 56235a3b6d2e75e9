#!/usr/bin/env bash
# The README commands: set up whatever is missing, then run the job.
#
#   bash tools/run.sh demo [tools/demo.py options]   # the end-to-end demo
#   bash tools/run.sh test [pytest options]          # the test suite
#   bash tools/run.sh test-classic [pytest options]  # the package's tests in
#       the classic user stack (torch 2.1, numpy 1.24; requirements/constraints)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
job="${1:-}"
case "$job" in
  demo | test) shift; export SAEVIT_STACK=reference ;;
  test-classic) shift; export SAEVIT_STACK=classic ;;
  *) echo "usage: bash tools/run.sh {demo|test|test-classic} [options]; got '${job}'" >&2; exit 2 ;;
esac
bash "$REPO/tools/setup_env.sh"
if [ "$SAEVIT_STACK" = classic ]; then
  PY="${SAEVIT_VENV:-${SAEVIT_CACHE:-$HOME/.cache/saevit_mm}/venvs/classic}/bin/python"
else
  PY="${SAEVIT_VENV:-$REPO/.venv}/bin/python"
fi
cd "$REPO"
case "$job" in
  demo) exec "$PY" tools/demo.py "$@" ;;
  test) exec "$PY" -m pytest "$@" ;;
  # what a user of the classic stack relies on: the backbone, every config,
  # train + test + resume per host through tools/, checkpoint loading (also
  # of files the reference stack wrote), the deploy form, ONNX export and
  # torch.compile
  test-classic)
    exec "$PY" -m pytest tests/test_models tests/test_configs.py \
      tests/test_deploy.py \
      tests/test_registry.py tests/test_stack.py tests/test_tools.py \
      tests/test_checkpoint.py tests/test_backbone_weights.py \
      tests/test_checkpoint_loader.py tests/test_checkpoint_stacks.py \
      tests/test_config_train_step.py tests/test_random_state_hook.py \
      tests/test_compile.py "$@" ;;
esac
