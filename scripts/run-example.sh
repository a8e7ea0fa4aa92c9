#!/usr/bin/env bash
# Install (scripts/bootstrap.sh), then run the main job: the stylize-batch flow on the example
# manifest (generated photos x generated paintings), on the CPU, with a temporary local Prefect
# server, into example-out/ (images, JSON sidecars, summary.json, index.html).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/nst run manifests/example.yaml "$@"
