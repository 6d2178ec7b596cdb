#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite against a real LiveKit server.
# Extra arguments go to pytest, e.g. scripts/test.sh -k avsync -s
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh dev,demo || exit 1
.venv/bin/ruff check . || { echo "ruff found the problems above: fix them first" >&2; exit 1; }
.venv/bin/mypy || { echo "mypy found the type errors above: fix them first" >&2; exit 1; }
.venv/bin/python -m pytest -ra "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing, an empty run proves nothing" >&2
  exit 1
fi
exit "$rc"
