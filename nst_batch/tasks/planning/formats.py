"""The image files a collection takes, by extension, and why it leaves the others out."""

from __future__ import annotations

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".avif", ".bmp", ".tif", ".tiff", ".gif")
HEIF_EXTENSIONS = (".heic", ".heif", ".hif")  # iPhones' default: read with the `heic` extra (pillow-heif)
# Why a listed folder's file of a kind is not taken (every other kind: "not an image").
NOT_TAKEN = {
    **dict.fromkeys(
        HEIF_EXTENSIONS,
        "HEIC/HEIF needs the optional pillow-heif: pip install 'nst-batch[heic]' (or convert them to JPEG)",
    ),
    **dict.fromkeys(
        (".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".raw"),
        "camera RAW files are not read: develop them to JPEG, PNG or TIFF first",
    ),
    "": "no extension: name them with their format's extension (.jpg, .png, ...) to include them",
}


def image_extensions() -> tuple[str, ...]:
    """The extensions a listing takes: HEIC/HEIF too where pillow-heif is installed."""
    return IMAGE_EXTENSIONS + (HEIF_EXTENSIONS if heif_supported() else ())


def heif_supported() -> bool:
    """Whether HEIC/HEIF photos are read: with the optional pillow-heif (``pip install
    'nst-batch[heic]'``), registered with Pillow on the first call."""
    global _HEIF
    if _HEIF is None:
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            _HEIF = False
        else:
            register_heif_opener()
            _HEIF = True
    return _HEIF


_HEIF: bool | None = None
