"""nst-batch: neural style transfer (Gatys, Ecker & Bethge, CVPR 2016) for photo collections.

Three rings, imports pointing inward:

- :mod:`nst_batch.core`: the stylizer, pure PyTorch (VGG-19, losses, L-BFGS, coarse-to-fine);
- :mod:`nst_batch.tasks`: adapters from the core to files, storage, devices and Prefect, in the
  order a pair goes through them (planning, pair, output, presenting, running);
- :mod:`nst_batch.flows` and :mod:`nst_batch.cli`: the `stylize-batch` flow and the `nst`
  command, which only compose tasks.
"""

import os as _os

# Short OpenMP spinning for this process and the processes it starts (why: nst_batch.tasks.pair.threads).
# Set on import, before PyTorch loads its OpenMP runtime, which reads them once; a user's own
# values win. GNU OpenMP (PyTorch's Linux wheels) reads GOMP_SPINCOUNT (spin turns before a
# waiting thread sleeps; its default is ~300,000), Intel's OpenMP KMP_BLOCKTIME (ms).
OPENMP_DEFAULTS = {"GOMP_SPINCOUNT": "30000", "KMP_BLOCKTIME": "1"}
for _key, _value in OPENMP_DEFAULTS.items():
    _os.environ.setdefault(_key, _value)
