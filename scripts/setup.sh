#!/usr/bin/env bash
# Idempotent setup of a fresh Debian 12 machine for roadsense development and CI.
#
#   bash scripts/setup.sh          (from any directory; as root, or a user with sudo)
#
# Installs with apt only what is missing (PostgreSQL server, Java, Maven, Node/npm), creates
# .venv at the repository root with `pip install -e '.[test]'`, then fetches the Kafka broker
# jars (Maven Central) and the PGlite/TimescaleDB node_modules (npm ci). Nothing is started:
# `.venv/bin/python -m pipeline.stack up --timescale` does that.
#
# Environment: PYTHON (interpreter for the venv, default python3; must be >= 3.11).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=()
fi

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "missing: $*; no apt-get here, install them by hand"
    if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
        die "missing: $*; run this script as root or install sudo"
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@"
}

# --- system packages -----------------------------------------------------------------------
missing=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v java >/dev/null 2>&1 || missing+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
else
    say "system packages present (postgresql, java, mvn, node, npm)"
fi

# The Debian postgresql package starts a cluster on 5432 through systemd where systemd runs;
# the local stack does not use it (it runs its own cluster on 127.0.0.1:15432).

java_major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
[ "${java_major%%.*}" -ge 11 ] 2>/dev/null || die "Java >= 11 needed for Kafka 3.9 (found ${java_major:-none})"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 18 ] || die "Node >= 18 needed for PGlite (found $(node --version))"

# --- Python venv ---------------------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (need Python >= 3.11)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is $("$PYTHON" --version 2>&1); roadsense needs >= 3.11 (set PYTHON=...)"
    if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    say "creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die ".venv has $(.venv/bin/python --version 2>&1); remove it and rerun with PYTHON=python3.11"
say "pip install -e '.[test]'"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# --- stack artefacts (Kafka jars, PGlite node_modules) --------------------------------------
say "fetching the Kafka jars and PGlite node_modules (skipped when up to date)"
.venv/bin/python -m pipeline.stack prepare

say "done. Start the local stack with: .venv/bin/python -m pipeline.stack up --timescale"
