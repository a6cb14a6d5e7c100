#!/usr/bin/env bash
# The README's test command: installs what the tests need into .venv (the CPU build of torch pinned in
# pyproject.toml, the project with its test extras, and Chromium for the report test), then runs pytest in two
# worker processes (pytest-xdist).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0 -e '.[test]' 2>&1 \
    | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import taskonomy_db.cli, torch, onnxruntime, duckdb, pulp, xdist" >/dev/null

# The HTML report is checked in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "warning: could not install chromium; the report's browser test will be skipped" >&2
fi

# Two workers, a test file each at a time: most tests wait on a subprocess or run single-threaded, so the suite
# shares 2 cores better this way; a file's module fixtures are still built once.
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
