#!/usr/bin/env bash
# Create .venv (if missing) and install the project with its test dependencies into it, at the
# exact versions of constraints.txt (the set the tests ran on; the Dockerfile uses the same file).
# Idempotent: a second run only re-checks the versions.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch 2.14.1 / torchvision 0.29.1 (a CUDA build on x86_64 that also runs on the CPU): pip takes
# them from a local wheel directory when pip.conf points to one.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
