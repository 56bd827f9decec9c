#!/usr/bin/env bash
# Fresh machine -> the whole test suite, in one command (what CI runs through .ci/run):
#   bash scripts/test.sh [pytest args]
# Sets everything up, starts the local stack with the TimescaleDB tier (idempotent: a
# running stack is reused), runs unit and integration tests. Under CI (CI=true) the stack
# is stopped afterwards; on a developer machine it is left running for fast reruns.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/setup.sh"
cd "$REPO"
if [ "${CI:-}" = "true" ]; then
    trap '.venv/bin/python -m pipeline.stack down || true' EXIT
fi
.venv/bin/python -m pipeline.stack up --timescale
.venv/bin/python -m pytest -q -p no:cacheprovider --timeout=900 "$@"
