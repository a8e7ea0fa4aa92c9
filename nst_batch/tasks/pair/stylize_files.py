"""Stylize one content image with one or more style images, from files to a file.

Everything that can be checked is checked before the optimisation starts, and the output and its
metadata are written atomically at the end: a failed run leaves no partial file. With
``save_every`` it leaves the best image so far at the output path (a checkpoint, also written
atomically), which is what that option is for.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from nst_batch.core import ProgressCallback, StepInfo, StyleConfig, resolve_device, with_images
from nst_batch.core.stylizer import REPORT_EVERY
from nst_batch.tasks.basics import json_bytes, sha256_hex
from nst_batch.tasks.errors import InputError
from nst_batch.tasks.output.checks import check_not_inputs, check_writable_file
from nst_batch.tasks.output.storage import storage_for
from nst_batch.tasks.pair.image_files import OUTPUT_FORMATS, LoadedImage, encode_image, output_format, read_file
from nst_batch.tasks.pair.masks import MaskInput
from nst_batch.tasks.pair.pipeline import pair_record
from nst_batch.tasks.pair.produce import produce_image
from nst_batch.tasks.pair.records import PairRecord
from nst_batch.tasks.planning.runtime import RuntimeOptions


@dataclass(frozen=True)
class InputFile:
    path: str
    data: bytes

    @property
    def sha256(self) -> str:
        return sha256_hex(self.data)


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
    mask_path: str | os.PathLike[str] | None = None,
    mask_styles: Mapping[str, str] | None = None,
) -> PairRecord:
    """Run one stylization end to end and return its record (also written to ``metadata_path``: the sidecar's form).

    ``save_every`` N > 0 writes the best image so far to ``output_path`` (atomically) every N
    iterations, so a long run stopped by Ctrl-C or a crash keeps its latest state.

    ``mask_path`` and ``mask_styles`` (colour -> a style's file name without extension, its
    position 1, 2, ..., or ``keep``) give each part of the photo its own style, or none.
    """
    began = time.perf_counter()
    fmt = output_format(output_path)
    _check_request(cfg, style_paths, init_image_path, save_every)
    if (mask_path is None) != (mask_styles is None):
        raise InputError("mask and mask_styles go together: the image, and what its colours take", settings=["mask"])
    _check_outputs(output_path, metadata_path, content_path, style_paths, init_image_path, mask_path)
    resolve_device(runtime.device)  # a device this machine lacks: one line, before reading anything
    content_file, style_files = read_input(content_path), [read_input(p) for p in style_paths]
    init_file = read_input(init_image_path) if init_image_path is not None else None
    mask = (
        _mask_input(mask_path, mask_styles, style_paths) if mask_path is not None and mask_styles is not None else None
    )
    checkpoints = _Checkpoints(on_step, output_path, fmt, runtime, save_every)
    # No target cache: nst stylize writes only the files it is given, the style targets are computed here.
    made = produce_image(
        content_file.path,
        content_file.data,
        [(f.path, f.data) for f in style_files],
        cfg,
        runtime,
        init=(init_file.path, init_file.data) if init_file else None,
        on_step=checkpoints.callback(),
        report_every=math.gcd(REPORT_EVERY, save_every) if save_every else REPORT_EVERY,
        on_decoded=checkpoints.decoded,
        mask=mask,
    )
    with made.timings("write"):
        written = encode_image(made.image, fmt, alpha=made.content.alpha, quality=runtime.quality)
        _write(output_path, written)
        checkpoints.finished()
    styles = [(Path(f.path).stem, f.path, f.data) for f in style_files]
    record = replace(
        pair_record(
            Path(output_path).stem,
            str(output_path),
            _extension(fmt),
            written,
            content_file.path,
            content_file.data,
            styles,
            made,
            runtime,
            began,
        ),
        init_image={"path": init_file.path, "sha256": init_file.sha256} if init_file else None,
        runtime=asdict(runtime),
        mask=mask.record() if mask is not None else None,
    )
    if metadata_path is not None:
        _write(metadata_path, json_bytes(record.to_json()))
    return record


def _mask_input(
    path: str | os.PathLike[str], mapping: Mapping[str, str], style_paths: list[str] | list[Path]
) -> MaskInput:
    """The mask, its colours' styles named by the style files' names (a position 1, 2, ... names one too)."""
    names = tuple(Path(p).stem for p in style_paths)
    if len(set(names)) != len(names):
        names = tuple(str(i + 1) for i in range(len(names)))  # two files of one name: their positions name them
    by_position = {str(i + 1): n for i, n in enumerate(names)}
    styles = {colour: by_position.get(label, label) for colour, label in mapping.items()}
    return MaskInput(str(path), read_input(path).data, styles, names)


def _extension(fmt: str) -> str:
    """A batch's name for Pillow's format (``JPEG`` -> ``jpg``)."""
    return next(ext for ext, name in OUTPUT_FORMATS.items() if name == fmt)


def _check_request(
    cfg: StyleConfig, style_paths: list[str] | list[Path], init: str | os.PathLike[str] | None, save_every: int
) -> None:
    if not style_paths:
        raise InputError("at least one style image is needed")
    if cfg.init == "image" and init is None:
        raise InputError("init 'image' needs an init image (init_image)", settings=["init_image"])
    if save_every < 0:
        raise InputError(f"save_every must be >= 0, got {save_every}", settings=["save_every"])


__all__ = ["RuntimeOptions", "stylize_files"]


def _check_outputs(
    output: str | os.PathLike[str],
    metadata: str | os.PathLike[str] | None,
    content: str | os.PathLike[str],
    styles: Sequence[str | os.PathLike[str]],
    init: str | os.PathLike[str] | None,
    mask: str | os.PathLike[str] | None = None,
) -> None:
    """Before any work: no output is an input (or the other output), and every output's folder takes a new file."""
    outputs = {"output": output, **({"metadata": metadata} if metadata is not None else {})}
    inputs: dict[str, str | os.PathLike[str]] = {"content": content}
    inputs.update({f"style #{i + 1}" if len(styles) > 1 else "style": p for i, p in enumerate(styles)})
    if init is not None:
        inputs["init_image"] = init
    if mask is not None:
        inputs["mask"] = mask
    check_not_inputs(outputs, inputs)
    for role, path in outputs.items():
        check_writable_file(path, role)


def _write(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically; a fault after the checks (a full disk) is a :class:`StorageError` naming the file."""
    storage_for(str(path)).write_bytes(str(path), data)


def checkpoint_path(output: str | os.PathLike[str]) -> str:
    """Where ``--save-every`` writes: ``NAME.checkpoint.EXT`` beside the output, never the output's
    own name (a run stopped at a coarse scale would leave a small image that looks finished)."""
    text = str(output)
    stem, dot, ext = text.rpartition(".")
    return f"{stem}.checkpoint.{ext}" if dot and "/" not in ext else f"{text}.checkpoint"


class _Checkpoints:
    """``on_step``, plus a write of the best image so far to :func:`checkpoint_path` every
    ``every`` iterations (the core hands it over at report points, which ``report_every`` aligns
    with ``every``), encoded with the content's alpha once the content is decoded; removed when the
    output is written."""

    def __init__(
        self,
        on_step: ProgressCallback | None,
        output: str | os.PathLike[str],
        fmt: str,
        runtime: RuntimeOptions,
        every: int,
    ) -> None:
        self.on_step, self.fmt, self.runtime, self.every = on_step, fmt, runtime, every
        self.output = checkpoint_path(output)
        self.written = False
        self.alpha: Any = None

    def finished(self) -> None:
        if self.written:
            storage_for(self.output).delete(self.output)

    def decoded(self, content: LoadedImage) -> None:
        self.alpha = content.alpha

    def callback(self) -> ProgressCallback | None:
        if not self.every:
            return self.on_step

        def step(info: StepInfo) -> None:
            if info.image is not None and not info.scale_done and info.iteration % self.every == 0:
                _write(self.output, encode_image(info.image, self.fmt, alpha=self.alpha, quality=self.runtime.quality))
                self.written = True
            if self.on_step is not None:
                self.on_step(info)

        return with_images(step)
