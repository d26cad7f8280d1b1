#!/usr/bin/env bash
# Create .venv and install the project (with the extras given, e.g. "test")
# once. Each install is recorded against pyproject.toml, so later runs skip
# it and need no package index: the app then starts at once, offline.
# Usage: bash scripts/setup_env.sh [EXTRAS]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
record=".venv/.wbc-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
# the app ("" extras) is served by any install of this pyproject; "test" needs the test extras
if [ -x .venv/bin/python ] && [ -f "$record" ] && grep -q "^$want ${extras:-.*}$" "$record"; then
    exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "error: python3 with venv is needed (Debian/Ubuntu: apt-get install python3-venv)" >&2
    exit 1
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"; then
    if [ -f "$record" ] && [ -x .venv/bin/wbc-desktop ]; then
        echo "warning: could not update the installation (no package index?); using the one already installed" >&2
        exit 0
    fi
    echo "error: the first set-up downloads the packages once: connect to the network (or a package mirror) and run it again" >&2
    exit 1
fi
echo "$want $extras" >> "$record"
