#!/usr/bin/env bash
# Set up once (scripts/setup_env.sh), then start WBC Desktop with the shipped
# model. Later launches start at once and work without a network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
if [ "$(uname -s)" = Linux ] && command -v ldconfig >/dev/null && ! ldconfig -p | grep -q libEGL.so.1; then
    echo "warning: Qt needs system libraries that seem missing; on Debian/Ubuntu:" >&2
    echo "  sudo apt-get install libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3" >&2
fi
exec .venv/bin/wbc-desktop "$@"
