#!/usr/bin/env bash
# Fresh machine -> the whole pipeline on the real SQY network, in one command:
#   bash scripts/demo.sh [--vehicles N] [--seed S]
# Sets everything up (system packages, .venv, Kafka jars, PGlite), starts the local stack
# and runs `roadsense demo` (simulate -> Kafka -> Faust worker -> PostgreSQL -> top lists).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/setup.sh"
cd "$REPO"
exec .venv/bin/roadsense demo "$@"
