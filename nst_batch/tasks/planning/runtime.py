"""How and where to run, as opposed to what to compute (:class:`nst_batch.core.StyleConfig`): the one
place for these defaults. Free of PyTorch, so the CLI can show them in ``--help`` at once."""

from __future__ import annotations

from dataclasses import dataclass

from nst_batch.tasks.errors import InputError

MAX_THREADS = 1024
MAX_BATCH = 64
DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: larger inputs are refused unless the user raises it


@dataclass(frozen=True)
class RuntimeOptions:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    weights: str = "caffe"  # caffe | torchvision | path to a state-dict file
    weights_preprocessing: str | None = None  # for a state-dict file: caffe (default) | torchvision
    max_pixels: int = DEFAULT_MAX_PIXELS
    quality: int = 95  # JPEG / WebP
    deterministic: bool = False  # cuDNN deterministic algorithms (CPU runs are always repeatable)
    # Compute threads: 0 = auto, the CPUs this process may use (affinity and cgroup quota)
    # shared among the pairs running at once (see nst_batch.tasks.pair.threads).
    threads: int = 0
    # Photos optimised as one batch, 0 = auto (nst_batch.tasks.pair.produce.batch_size): photos
    # of one shape bucket and parameter set share each pass of the network.
    batch: int = 0

    def __post_init__(self) -> None:
        if self.max_pixels < 1:
            raise InputError(f"max_pixels must be >= 1, got {self.max_pixels}", settings=["max_pixels"])
        if not 1 <= self.quality <= 100:
            raise InputError(f"quality must be 1..100, got {self.quality}", settings=["quality"])
        if not 0 <= self.batch <= MAX_BATCH:
            raise InputError(f"batch must be 0 (auto) or 1..{MAX_BATCH}, got {self.batch}", settings=["batch"])
        if not 0 <= self.threads <= MAX_THREADS:
            raise InputError(f"threads must be 0 (auto) or 1..{MAX_THREADS}, got {self.threads}", settings=["threads"])
