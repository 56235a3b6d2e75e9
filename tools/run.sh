#!/usr/bin/env bash
# The two README commands: set up whatever is missing, then run the job.
#
#   bash tools/run.sh demo [tools/demo.py options]   # the end-to-end demo
#   bash tools/run.sh test [pytest options]          # the test suite
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
job="${1:-}"
case "$job" in
  demo | test) shift ;;
  *) echo "usage: bash tools/run.sh {demo|test} [options]; got '${job}'" >&2; exit 2 ;;
esac
bash "$REPO/tools/setup_env.sh"
PY="${SAEVIT_VENV:-$REPO/.venv}/bin/python"
cd "$REPO"
if [ "$job" = demo ]; then
  exec "$PY" tools/demo.py "$@"
else
  exec "$PY" -m pytest "$@"
fi
