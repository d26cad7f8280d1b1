#!/usr/bin/env bash
# Set up a virtual environment and run the test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && { ! ldconfig -p | grep -q libEGL.so.1 || ! command -v pdftotext >/dev/null; }; then
    # Qt's offscreen platform needs these libraries on a bare Debian/Ubuntu; pdftotext lets the tests read the PDF report
    apt-get update -qq && apt-get install -y -qq libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 poppler-utils >/dev/null
fi
bash scripts/setup_env.sh test
export QT_QPA_PLATFORM=offscreen
.venv/bin/python -m pytest -q "$@"
