"""Stylize one content image with one or more style images, from files to a file.

Everything that can be checked is checked before the optimisation starts, and the output and its
metadata are written atomically at the end, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nst_batch.core import (
    ProgressCallback,
    StepInfo,
    StyleConfig,
    configure_backends,
    for_device,
    resolve_device,
    stylize,
)
from nst_batch.core.config import MIN_SIDE_PX
from nst_batch.core.image_ops import fit_size
from nst_batch.tasks.errors import ImageInputError, InputError
from nst_batch.tasks.output.checks import check_not_inputs, check_writable_file
from nst_batch.tasks.output.storage import storage_for
from nst_batch.tasks.pair.images import LoadedImage, decode_image, encode_image, output_format, read_file
from nst_batch.tasks.pair.memory_guard import check_fits
from nst_batch.tasks.pair.models import get_features, get_weights
from nst_batch.tasks.pair.record import run_record, sha256_bytes
from nst_batch.tasks.planning.runtime import RuntimeOptions


@dataclass(frozen=True)
class InputFile:
    path: str
    data: bytes

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.data)


def read_input(path: str | os.PathLike[str]) -> InputFile:
    return InputFile(str(path), read_file(path))


_DEFAULT_RUNTIME = RuntimeOptions()


def stylize_files(
    content_path: str | os.PathLike[str],
    style_paths: list[str] | list[Path],
    output_path: str | os.PathLike[str],
    cfg: StyleConfig,
    runtime: RuntimeOptions = _DEFAULT_RUNTIME,
    *,
    init_image_path: str | os.PathLike[str] | None = None,
    metadata_path: str | os.PathLike[str] | None = None,
    on_step: ProgressCallback | None = None,
    save_every: int = 0,
) -> dict[str, Any]:
    """Run one stylization end to end and return its metadata (also written to ``metadata_path``).

    ``save_every`` N > 0 writes the best image so far to ``output_path`` (atomically) every N
    iterations, so a long run stopped by Ctrl-C or a crash keeps its latest state.
    """
    began = time.perf_counter()
    fmt = output_format(output_path)
    _check_request(cfg, style_paths, init_image_path, save_every)
    _check_outputs(output_path, metadata_path, content_path, style_paths, init_image_path)
    device = resolve_device(runtime.device)
    cfg = for_device(cfg, device)
    inputs = _load_inputs(content_path, style_paths, init_image_path, cfg, runtime)
    content, styles = inputs.content, inputs.styles
    style_pixels = max(math.prod(fit_size(*s.rgb.shape[-2:], max(cfg.style_sides()))) for s in styles)
    check_fits(cfg, content.rgb.shape[-2], content.rgb.shape[-1], device, inputs.content_file.path, style_pixels)
    features = get_features(runtime.weights, runtime.weights_preprocessing, cfg.layers[-1], cfg.pooling, device)
    configure_backends(device, runtime.deterministic)
    result = stylize(
        content.rgb.to(device),
        features,
        cfg,
        styles=[s.rgb.to(device) for s in styles],
        init_image=inputs.init.rgb.to(device) if inputs.init is not None else None,
        on_step=_with_checkpoints(on_step, output_path, fmt, content, runtime, save_every),
        report_every=math.gcd(REPORT_EVERY, save_every) if save_every else REPORT_EVERY,
    )
    _write(output_path, encode_image(result.image, fmt, alpha=content.alpha, quality=runtime.quality))
    meta = {"output": str(output_path), **inputs.record(), "runtime": asdict(runtime),
            **run_record(cfg, get_weights(runtime.weights, runtime.weights_preprocessing), result, device, began)}
    if metadata_path is not None:
        _write(metadata_path, (json.dumps(meta, indent=2) + "\n").encode())
    return meta


@dataclass(frozen=True)
class _Inputs:
    content_file: InputFile
    style_files: list[InputFile]
    init_file: InputFile | None
    content: LoadedImage
    styles: list[LoadedImage]
    init: LoadedImage | None

    def record(self) -> dict[str, Any]:
        """What the metadata says of the inputs: paths, sha256, the files' real sizes and modes."""
        def one(f: InputFile, image: LoadedImage) -> dict[str, Any]:
            return {"path": f.path, "sha256": f.sha256, "size": list(image.original_size), "mode": image.mode}

        return {"content": one(self.content_file, self.content),
                "styles": [one(f, s) for f, s in zip(self.style_files, self.styles, strict=True)],
                "init_image": {"path": self.init_file.path, "sha256": self.init_file.sha256} if self.init_file else None}


def _check_request(cfg: StyleConfig, style_paths: list[str] | list[Path], init: str | os.PathLike[str] | None, save_every: int) -> None:
    if not style_paths:
        raise InputError("at least one style image is needed")
    if cfg.init == "image" and init is None:
        raise InputError("init 'image' needs an init image (init_image)", settings=["init_image"])
    if save_every < 0:
        raise InputError(f"save_every must be >= 0, got {save_every}", settings=["save_every"])


def _load_inputs(content_path: str | os.PathLike[str], style_paths: list[str] | list[Path], init_path: str | os.PathLike[str] | None,
                 cfg: StyleConfig, runtime: RuntimeOptions) -> _Inputs:
    """Read and decode every input (downsized while decoding) and check that each can be stylized."""
    content_file, style_files = read_input(content_path), [read_input(p) for p in style_paths]
    init_file = read_input(init_path) if init_path is not None else None
    content = decode_image(content_file.data, content_file.path, max_pixels=runtime.max_pixels, max_side=cfg.size)
    check_aspect(content, cfg, content_file.path)
    styles = [decode_image(f.data, f.path, max_pixels=runtime.max_pixels, max_side=max(cfg.style_sides())) for f in style_files]
    for image, f in zip(styles, style_files, strict=True):
        check_aspect(image, cfg, f.path, style=True)
    init = decode_image(init_file.data, init_file.path, max_pixels=runtime.max_pixels, max_side=cfg.size) if init_file else None
    return _Inputs(content_file, style_files, init_file, content, styles, init)


REPORT_EVERY = 10  # iterations between the core's report points (losses read back, previews)

__all__ = ["RuntimeOptions", "check_aspect", "stylize_files"]


def _check_outputs(output: str | os.PathLike[str], metadata: str | os.PathLike[str] | None, content: str | os.PathLike[str],
                   styles: list[str] | list[Path], init: str | os.PathLike[str] | None) -> None:
    """Before any work: no output is an input (or the other output), and every output's folder takes a new file."""
    outputs = {"output": output, **({"metadata": metadata} if metadata is not None else {})}
    inputs: dict[str, str | os.PathLike[str]] = {"content": content}
    inputs.update({f"style #{i + 1}" if len(styles) > 1 else "style": p for i, p in enumerate(styles)})
    if init is not None:
        inputs["init_image"] = init
    check_not_inputs(outputs, inputs)
    for role, path in outputs.items():
        check_writable_file(path, role)


def _write(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically; a fault after the checks (a full disk) is a :class:`StorageError` naming the file."""
    storage_for(str(path)).write_bytes(str(path), data)


def _with_checkpoints(on_step: ProgressCallback | None, output: str | os.PathLike[str], fmt: str, content: LoadedImage,
                      runtime: RuntimeOptions, every: int) -> ProgressCallback | None:
    """``on_step``, plus a write of the best image so far every ``every`` iterations (the core
    hands it over at report points, which ``report_every`` aligns with ``every``)."""
    if not every:
        return on_step

    def step(info: StepInfo) -> None:
        if info.image is not None and not info.scale_done and info.iteration % every == 0:
            _write(output, encode_image(info.image, fmt, alpha=content.alpha, quality=runtime.quality))
        if on_step is not None:
            on_step(info)

    step.wants_images = True  # type: ignore[attr-defined]
    return step


def check_aspect(image: LoadedImage, cfg: StyleConfig, name: str, style: bool = False) -> None:
    """Refuse images too small to carry any content, or so narrow that their short side falls
    under VGG-19's minimum at some scale."""
    width, height = image.original_size
    if min(width, height) < MIN_SIDE_PX:
        raise ImageInputError(f"{name}: {width}x{height} is too small to stylize (at least {MIN_SIDE_PX} px per side)")
    _, _, h, w = image.rgb.shape
    smallest = min(cfg.style_sides() if style else cfg.sides())
    short = min(fit_size(h, w, smallest))
    if short < MIN_SIDE_PX:
        raise ImageInputError(
            f"{name}: {w}x{h} is too narrow: at {smallest} px its short side would be {short} px, "
            f"under the {MIN_SIDE_PX} px VGG-19 needs (crop it, or use a larger --size / fewer --scales)"
        )

