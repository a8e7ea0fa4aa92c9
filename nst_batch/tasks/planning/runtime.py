"""How and where to run, as opposed to what to compute (:class:`nst_batch.core.StyleConfig`): the one
place for these settings. Each field's metadata holds its help and its range; the manifest's runtime
keys (nst_batch.tasks.planning.manifest) and the CLI's runtime flags (nst_batch.cli.parser) are
generated from them, and ``__post_init__`` is the one range check. Free of PyTorch, so the CLI can
show them in ``--help`` at once."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from nst_batch.tasks.errors import InputError

MAX_THREADS = 1024
MAX_BATCH = 64
DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: larger inputs are refused unless the user raises it


def _setting(
    default: Any,
    help: str,
    *,
    low: int | None = None,
    high: int | None = None,
    auto: bool = False,
    choices: tuple[str, ...] = (),
    shown: str | None = None,
    one_image: bool = True,
) -> Any:
    """A runtime setting: ``low``/``high`` its range (``auto``: 0 means "choose for me"),
    ``choices`` its words, ``shown`` how --help says its default, ``one_image``: ``nst stylize``
    takes it too (a batch's size does not apply to one image)."""
    return field(
        default=default,
        metadata={
            "help": help,
            "low": low,
            "high": high,
            "auto": auto,
            "choices": choices,
            "shown": shown,
            "one_image": one_image,
        },
    )


@dataclass(frozen=True)
class RuntimeOptions:
    device: str = _setting("auto", "auto, cpu, cuda or cuda:N")
    weights: str = _setting("caffe", "caffe (original VGG-19, offline), torchvision, or a state-dict file")
    weights_preprocessing: str | None = _setting(
        None, "input convention of a state-dict file", choices=("caffe", "torchvision"), shown="caffe"
    )
    max_pixels: int = _setting(DEFAULT_MAX_PIXELS, "refuse input images with more pixels", low=1)
    quality: int = _setting(95, "JPEG/WebP quality", low=1, high=100)
    deterministic: bool = _setting(
        False, "deterministic cuDNN algorithms (slower on a GPU; CPU runs are always repeatable)"
    )
    threads: int = _setting(
        0,
        "compute threads, shared among the pairs running at once (0: the CPUs this process may use, by "
        "affinity and cgroup quota; or $NST_THREADS, $OMP_NUM_THREADS)",
        low=0,
        high=MAX_THREADS,
        auto=True,
    )
    batch: int = _setting(
        0,
        "photos of one shape and parameter set optimised as one batch (0: chosen for the device)",
        low=0,
        high=MAX_BATCH,
        auto=True,
        one_image=False,
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            problem = range_problem(f.name, getattr(self, f.name))
            if problem:
                raise InputError(problem, settings=[f.name])

    @classmethod
    def from_values(cls, values: Any) -> RuntimeOptions:
        """The options of any object with an attribute per setting (the manifest, the CLI's arguments):
        the one conversion. An attribute it lacks keeps its default."""
        return cls(**{f.name: getattr(values, f.name) for f in fields(cls) if hasattr(values, f.name)})


def range_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid ``name``, in the setting's own words; None when it is."""
    meta = next(f.metadata for f in fields(RuntimeOptions) if f.name == name)
    low, high = meta["low"], meta["high"]
    if not isinstance(value, int) or (low is None and high is None):
        return None
    if (low is None or value >= low) and (high is None or value <= high):
        return None
    if meta["auto"]:
        return f"{name} must be 0 (auto) or 1..{high}, got {value}"
    return f"{name} must be {low}..{high}, got {value}" if high is not None else f"{name} must be >= {low}, got {value}"
