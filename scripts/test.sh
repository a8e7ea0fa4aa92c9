#!/usr/bin/env bash
# Install (scripts/bootstrap.sh) and run the whole test suite. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh || exit 1
# The gallery is tested in a real browser: Debian's chromium and its driver, installed when missing.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "warning: could not install chromium; the browser test will fail under CI" >&2
  else
    echo "warning: chromium/chromedriver missing (apt-get install chromium chromium-driver); the browser test is skipped" >&2
  fi
fi
.venv/bin/ruff check . || exit 1
.venv/bin/ruff format --check --quiet . || { echo "run: .venv/bin/ruff format ." >&2; exit 1; }
.venv/bin/mypy || exit 1  # the package, 0 errors ([tool.mypy] in pyproject.toml)
.venv/bin/python -m pytest "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$code"
