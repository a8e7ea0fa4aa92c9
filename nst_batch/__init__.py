"""nst-batch: neural style transfer (Gatys, Ecker & Bethge, CVPR 2016) for photo collections.

Three rings, imports pointing inward:

- :mod:`nst_batch.core`: the stylizer, pure PyTorch (VGG-19, losses, L-BFGS, coarse-to-fine);
- :mod:`nst_batch.tasks`: adapters from the core to files, storage, devices and Prefect, in the
  order a pair goes through them (planning, pair, output, presenting, running);
- :mod:`nst_batch.flows` and :mod:`nst_batch.cli`: the `stylize-batch` flow and the `nst`
  command, which only compose tasks.
"""
