"""Image files <-> tensors: every mode Pillow reads, EXIF rotation, ICC profiles, a pixel limit.

Errors about a file are :class:`ImageInputError` with a one-line message naming the file.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, PngImagePlugin, UnidentifiedImageError

from nst_batch.core.config import MIN_SIDE_PX, StyleConfig
from nst_batch.tasks.errors import ImageInputError, PairFailed, StorageError
from nst_batch.tasks.output.storage import storage_for
from nst_batch.tasks.planning.formats import heif_supported
from nst_batch.tasks.planning.runtime import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:  # PyTorch is imported where tensors are made: probing a header needs none
    from torch import Tensor

# Our own limit (checked from the header, before decoding) replaces Pillow's global one, so a
# user who raises ours is not stopped by Pillow's.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a half-grey image

OUTPUT_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}  # a batch's `format` -> Pillow's name
FORMATS = {f".{ext}": name for ext, name in OUTPUT_FORMATS.items()} | {".jpeg": "JPEG"}
ALPHA_FORMATS = {"PNG", "WEBP"}
_SRGB = ImageCms.createProfile("sRGB")


@dataclass(frozen=True)
class LoadedImage:
    rgb: Tensor  # (1, 3, H, W) float32 in [0, 1], contiguous, flattened on white if it had alpha
    alpha: Tensor | None  # (1, 1, H, W) in [0, 1] when the image had transparency
    original_size: tuple[int, int]  # (width, height) of the file, after EXIF rotation
    mode: str  # Pillow mode of the file
    # What the decode left out or what the decoder warned of, one line each (the first frame of
    # an animation taken, a broken EXIF block): the sidecar records them, the run says them.
    notes: tuple[str, ...] = ()


def output_format(path: str | os.PathLike[str]) -> str:
    """Pillow format name for an output path, from its extension."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise ImageInputError(
            f"{path}: unsupported output extension {ext or '(none)'!r}; use .png, .jpg, .jpeg or .webp"
        )
    return FORMATS[ext]


def load_image(
    path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = None
) -> LoadedImage:
    """Read and decode an image file (see :func:`decode_image`)."""
    return decode_image(read_file(path), str(path), max_pixels=max_pixels, max_side=max_side)


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a local regular file, or an :class:`ImageInputError` saying why not."""
    from nst_batch.tasks.output.storage import storage_for

    try:
        return storage_for(str(path)).read_bytes(str(path))
    except FileNotFoundError:
        raise ImageInputError(f"{path}: no such file") from None
    except StorageError as exc:
        message = str(exc).replace(": is a directory", ": is a directory, not an image")
        raise ImageInputError(message) from None


def probe_image_file(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """(format, width, height) of a local image file from its header alone: nothing is decoded,
    so checking a 100 MP photo costs a few kB of reading. Raises :class:`ImageInputError`."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        missing = "no such file" if Path(path).parent.is_dir() else f"no such file (and no folder {Path(path).parent})"
        raise ImageInputError(f"{path}: {missing}") from None
    except OSError as exc:
        raise ImageInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageInputError(
            f"{path}: is a directory, not an image" if stat.S_ISDIR(info.st_mode) else f"{path}: not a regular file"
        )
    if info.st_size == 0:
        raise ImageInputError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings(), Image.open(path) as image:
            warnings.simplefilter(
                "ignore"
            )  # a header's oddities (a broken EXIF block) are the decode's notes, not terminal text
            width, height, fmt = image.width, image.height, image.format or "?"
    except UnidentifiedImageError:
        raise ImageInputError(f"{path}: not an image file Pillow can read") from None
    except OSError as exc:
        raise ImageInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except Exception as exc:  # malformed headers raise a variety of errors
        raise ImageInputError(f"{path}: truncated or corrupt image header ({exc})") from None
    _check_pixels(path, width, height, max_pixels)
    return fmt, width, height


HEADER_BYTES = 1 << 17  # enough for every format's size fields, past a large EXIF block (JPEG allows 64 kB)


def probe_image_header(head: bytes, name: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Check the first bytes of a file: an image Pillow knows, within ``max_pixels``. A header
    Pillow cannot finish parsing from these bytes alone passes: decoding checks it again."""
    if not head:
        raise ImageInputError(f"{name}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(head)) as image:
            width, height = image.size
    except UnidentifiedImageError:
        if len(head) < HEADER_BYTES:  # the whole file was read: it is not an image
            raise ImageInputError(f"{name}: not an image file Pillow can read") from None
        raise ImageInputError(
            f"{name}: not an image file Pillow can read (checked its first {len(head):,} bytes)"
        ) from None
    except Exception:
        return
    _check_pixels(name, width, height, max_pixels)


def upright_size_from_header(head: bytes) -> tuple[int, int] | None:
    """(width, height) as the image is shown (after its EXIF rotation), from its first bytes; None
    when they do not say."""
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(head)) as image:
            warnings.simplefilter("ignore")
            return _upright_size(image)
    except Exception:
        return None


def _check_pixels(name: str | os.PathLike[str], width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageInputError(
            f"{name}: {width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,} "
            "(a guard against decompression bombs; raise max_pixels)",
            settings=["max_pixels"],
        )


def decode_image(
    data: bytes, name: str, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = None
) -> LoadedImage:
    """Decode image bytes to an RGB tensor in [0, 1].

    ``max_side`` downsizes (never enlarges) large images while decoding, which keeps a 50 MP
    photo from costing gigabytes when the output is 512 px.
    """
    if not data:
        raise ImageInputError(f"{name}: empty file (0 bytes)")
    heif_supported()
    # Pillow's warnings (a broken EXIF block, "Palette images with Transparency ...") become the
    # image's notes: one line in the run's report, never raw text on the terminal.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, original, declared, frames = _decoded(data, name, max_pixels, max_side)
        mode = image.mode
        rgb, alpha = _to_rgb_and_alpha(image, declared)
    if max_side is not None and max(rgb.size) > max_side:
        size = _fit(rgb.size, max_side)
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
        alpha = alpha.resize(size, Image.Resampling.LANCZOS) if alpha is not None else None
    notes = [f"{frames} frames: the first is used"] if frames > 1 else []
    notes += list(
        dict.fromkeys(
            f"the decoder warned: {' '.join(str(w.message).split())[:200]}"
            for w in caught
            if "Transparency expressed in bytes" not in str(w.message)
        )
    )  # that one is handled: alpha is kept
    return LoadedImage(_to_tensor(rgb), _to_tensor(alpha) if alpha is not None else None, original, mode, tuple(notes))


def _decoded(
    data: bytes, name: str, max_pixels: int, max_side: int | None
) -> tuple[Image.Image, tuple[int, int], float | None, int]:
    """The decoded image (upright), its upright size in the file, an integer TIFF's white and
    how many frames (pages) the file has."""
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageInputError(f"{name}: not an image file Pillow can read") from None
    except Exception as exc:  # malformed headers raise a variety of errors
        raise ImageInputError(f"{name}: truncated or corrupt image header ({exc})") from None
    width, height = image.size
    _check_pixels(name, width, height, max_pixels)
    if width < 1 or height < 1:
        raise ImageInputError(f"{name}: image has no pixels ({width}x{height})")
    _check_decode_memory(image, name, max_side)
    original = _upright_size(image)  # before draft(), which shrinks JPEGs while decoding
    try:
        if max_side is not None and image.format == "JPEG":
            image.draft("RGB", (max_side, max_side))  # decode JPEGs at a reduced DCT scale
        image.load()
        frames = getattr(image, "n_frames", 1)
        declared = _declared_top(image)  # before exif_transpose, whose copy has no TIFF tags
        image = ImageOps.exif_transpose(image)
    except Exception as exc:  # OSError("image file is truncated"), SyntaxError, ValueError, ...
        raise ImageInputError(f"{name}: truncated or corrupt image data ({exc})") from None
    return image, original, declared, frames if isinstance(frames, int) else 1


# Bytes per pixel Pillow holds for a decoded image of each mode (RGB is stored in 4 bytes).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "LA": 4, "La": 4, "PA": 4}


def _check_decode_memory(image: Image.Image, name: str, max_side: int | None) -> None:
    """Refuse, from the header, an image whose decode would not fit in the RAM this process may
    use (``NST_MAX_MEMORY`` or what is available): the decoded pixels, an RGB copy and the float
    tensor (made at ``max_side`` when that is smaller). A JPEG decoded at a reduced scale is
    counted at that scale."""
    from nst_batch.core.memory import format_bytes
    from nst_batch.tasks.errors import TooLargeError
    from nst_batch.tasks.pair.memory_guard import memory_budget

    width, height = image.size
    if max_side is not None and image.format == "JPEG":
        scale = max(1, min(8, max(width, height) // max_side))
        width, height = -(-width // scale), -(-height // scale)
    pixels = width * height
    tensor = pixels if max_side is None else min(pixels, max_side * max_side)
    need = pixels * (_MODE_BYTES.get(image.mode, 4) + 4 + (1 if image.mode.startswith(("I", "F")) else 0)) + tensor * 12
    if need < 256 << 20:
        return
    import torch

    budget, source = memory_budget(torch.device("cpu"))
    if need > budget:
        raise TooLargeError(
            f"{name}: decoding its {image.size[0]}x{image.size[1]} pixels ({image.mode}) needs about "
            f"{format_bytes(need)}, over the {format_bytes(budget)} of {source} (downscale the image first)",
            settings=["max_pixels"],
        )


def _upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the file as shown, after its EXIF rotation (orientations 5-8 swap the sides)."""
    width, height = image.size
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block: exif_transpose ignores it too
        orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    w, h = size
    ratio = max_side / max(w, h)
    return max(1, round(w * ratio)), max(1, round(h * ratio))


def _to_rgb_and_alpha(image: Image.Image, declared_top: float | None = None) -> tuple[Image.Image, Image.Image | None]:
    """RGB (flattened on white where transparent) and the alpha channel, if any."""
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        image = _high_bit_depth_to_l(image, declared_top)
    image = _to_srgb(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return image.convert("RGB"), None
    rgba = image.convert("RGBA")
    alpha = rgba.getchannel("A")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB"), alpha


def _high_bit_depth_to_l(image: Image.Image, declared_top: float | None = None) -> Image.Image:
    """16-bit (and 32-bit int/float) grayscale -> 8-bit L by scaling, not by clipping at 255
    as ``convert("L")`` does. Converted a band of rows at a time in float32: with a float64 copy
    of the whole image, decoding a 10000x9999 16-bit PNG (194 kB on disk) peaked at 2.5 GB of
    RSS; now 1.2 GB (Pillow's 32-bit pixels, their array, the 8-bit result and a ~16 MB band)."""
    array = np.asarray(image)
    if image.mode == "F":
        top = 1.0 if array.max(initial=0.0) <= 1.0 else 255.0
    elif image.mode.startswith("I;16"):
        top = 65535.0
    else:  # 32-bit integers: the range the file declares, else 16 bits (16-bit PNGs open as I) or 32
        top = declared_top or (65535.0 if array.max(initial=0.0) <= 65535 else float(2**32 - 1))
    out = np.empty(array.shape, dtype=np.uint8)
    band = max(1, (1 << 22) // max(1, array.shape[1]))
    for row in range(0, array.shape[0], band):
        part = array[row : row + band].astype(np.float64 if top > 2**24 else np.float32)  # float32 is exact below 2**24
        out[row : row + band] = np.clip(np.rint(np.multiply(part, 255.0 / top)), 0, 255)
    return Image.fromarray(out, mode="L")


def _declared_top(image: Image.Image) -> float | None:
    """White for an integer TIFF: the range its BitsPerSample and SampleFormat declare (8, 16 or
    32 bits, signed or not; a signed image's negative values are below black). Dividing a 32-bit
    TIFF by 65535, as before, made it almost white."""
    tags = getattr(image, "tag_v2", None)
    if image.mode != "I" or tags is None or not tags.get(258):
        return None
    try:
        bits = tags.get(258)
        bits = int(bits[0] if isinstance(bits, tuple) else bits)
        sample_format = tags.get(339) or 1
        signed = int(sample_format[0] if isinstance(sample_format, tuple) else sample_format) == 2
    except (TypeError, ValueError, IndexError):
        return None
    return float(2 ** (bits - signed) - 1) if 1 < bits <= 64 else None


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert through an embedded ICC profile (Adobe RGB photos, CMYK print files) to sRGB."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out_mode = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode=out_mode)
        return converted if converted is not None else image
    except Exception:  # a broken profile: fall back to Pillow's plain conversion
        return image


def _to_tensor(image: Image.Image) -> Tensor:
    import torch

    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None].contiguous()


def encode_image(image: Tensor, fmt: str, *, alpha: Tensor | None = None, quality: int = 95) -> bytes:
    """(1, 3, H, W) in [0, 1] -> file bytes in ``fmt`` (PNG, JPEG or WEBP). ``alpha`` (1, 1, h, w)
    is resized to the image and kept where the format can hold it."""
    array = (image.detach().float().cpu()[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    pil = Image.fromarray(array, mode="RGB")
    if alpha is not None and fmt in ALPHA_FORMATS:
        a = Image.fromarray((alpha.float().cpu()[0, 0].clamp(0, 1).numpy() * 255).round().astype(np.uint8), mode="L")
        pil.putalpha(a.resize(pil.size, Image.Resampling.LANCZOS))
    buffer = io.BytesIO()
    # Signed (EXIF or PNG text "Software: nst-batch", in the first bytes): an output whose sidecar
    # is missing (a run killed between the two writes) is known for the tool's own, and replaced;
    # any other file under an output's name is not (nst_batch.tasks.running.ownership).
    exif = Image.Exif()
    exif[0x0131] = SOFTWARE
    if fmt == "JPEG":
        pil.save(
            buffer, "JPEG", quality=quality, subsampling=0, optimize=True, exif=exif.tobytes()
        )  # 4:4:4 keeps brush strokes crisp
    elif fmt == "WEBP":
        pil.save(buffer, "WEBP", quality=quality, method=4, exif=exif.tobytes())
    else:
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", SOFTWARE)
        pil.save(buffer, "PNG", optimize=False, compress_level=6, pnginfo=info)
    return buffer.getvalue()


SOFTWARE = "nst-batch"


def signed_by_us(head: bytes) -> bool:
    """Whether an image's first bytes carry :func:`encode_image`'s signature."""
    return f"Software\x00{SOFTWARE}".encode() in head or (b"Exif" in head and SOFTWARE.encode() in head)


def thumbnail(image: Tensor, max_side: int = 256) -> bytes:
    """A small JPEG of (1, 3, H, W) in [0, 1], for galleries."""
    array = (image.detach().float().cpu()[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    pil = Image.fromarray(array, mode="RGB")
    pil.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    pil.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def check_aspect(image: LoadedImage, cfg: StyleConfig, name: str, style: bool = False) -> None:
    """Refuse images too small to carry any content, or so narrow that their short side falls
    under VGG-19's minimum at some scale."""
    width, height = image.original_size
    if min(width, height) < MIN_SIDE_PX:
        raise ImageInputError(f"{name}: {width}x{height} is too small to stylize (at least {MIN_SIDE_PX} px per side)")
    from nst_batch.core.image_ops import fit_size

    _, _, h, w = image.rgb.shape
    smallest = min(cfg.style_sides() if style else cfg.sides())
    short = min(fit_size(h, w, smallest))
    if short < MIN_SIDE_PX:
        raise ImageInputError(
            f"{name}: {w}x{h} is too narrow: at {smallest} px its short side would be {short} px, "
            f"under the {MIN_SIDE_PX} px VGG-19 needs (crop it, or use a larger --size / fewer --scales)"
        )


def read_image_bytes(uri: str, max_pixels: int) -> bytes:
    """An input's bytes, once its header says it is an image within ``max_pixels``: a 2 GB file
    that is not one is refused after reading a few kB, not the whole of it."""
    storage = storage_for(uri)
    try:
        probe_image_header(storage.read_head(uri, HEADER_BYTES), uri, max_pixels=max_pixels)
        return storage.read_bytes(uri)
    except FileNotFoundError:
        raise PairFailed(f"{uri}: no such file") from None
    except Exception as exc:
        raise PairFailed(str(exc)) from None
