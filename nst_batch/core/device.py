"""Device and precision choices, made once at the edge and passed into the core."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

import torch

from nst_batch.core.config import StyleConfig
from nst_batch.core.errors import DeviceError


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} was asked for, but PyTorch sees no CUDA GPU here", settings=["device"])
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r} does not exist; this machine has {torch.cuda.device_count()} CUDA GPUs",
                settings=["device"],
            )
        return device
    raise DeviceError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}", settings=["device"])


def bf16_is_native(device: torch.device) -> bool:
    """Whether bf16 runs in hardware here (else PyTorch emulates it, correctly but slowly)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(device: torch.device, precision: str) -> str:
    """The precision a run uses here: ``auto`` is bf16 on a CPU with native bf16 (AVX512-BF16 or
    AMX) and fp32 elsewhere; ``bf16`` is refused where the hardware lacks it.

    Why bf16 on such CPUs: measured on a 2-core AMD EPYC with AVX512-BF16, an evaluation took 0.60
    of fp32's time at 512 px with the evaluator's distances within 3 % at 512 and 1024 px (docs/performance.md,
    "Precision"). Why not on GPUs yet: it has not been measured on one with this loop, so they keep
    TF32. Emulated bf16 is not a speed-up but a slow-down (measured on an AVX2-only CPU: 166 s per
    evaluation at 256x192 px against 1.1 s in fp32), hence never chosen and refused when asked for.
    """
    if precision == "auto":
        return "bf16" if device.type == "cpu" and bf16_is_native(device) else "fp32"
    if precision != "bf16" or bf16_is_native(device):
        return precision
    if device.type == "cuda":
        raise DeviceError(
            f"precision bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp32", settings=["precision"]
        )
    raise DeviceError(
        f"precision bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX); this one has "
        f"{torch.backends.cpu.get_cpu_capability()} "
        "and would emulate it about 100x slower than fp32; use fp32",
        settings=["precision"],
    )


def for_device(cfg: StyleConfig, device: torch.device, *, strict: bool = True) -> StyleConfig:
    """``cfg`` with its precision settled for ``device`` (see :func:`resolve_precision`): what a
    run records, and what its style targets are keyed by. ``strict=False`` (the core's own calls)
    settles ``auto`` but lets an explicit bf16 run emulated: refusing it is the outer rings' call."""
    if not strict and cfg.precision != "auto":
        return cfg
    precision = resolve_precision(device, cfg.precision)
    return cfg if precision == cfg.precision else replace(cfg, precision=precision)  # type: ignore[arg-type]


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast around the VGG forward when asked for; a no-op for fp32."""
    if precision != "bf16":
        yield
        return
    # No cast cache on CUDA: a captured CUDA graph must not keep casts made outside it (PyTorch's
    # CUDA-graph notes ask for cache_enabled=False); re-casting the weights costs microseconds.
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=device.type != "cuda"):
        yield


def configure_backends(device: torch.device, deterministic: bool = False, autotune: bool = True) -> None:
    """Process-wide switches for speed on CUDA; ``deterministic`` trades speed for repeatability.
    ``autotune``: cuDNN times its algorithms for each new input shape (the first iteration at a new
    photo shape pays for it; scripts/gpu-check.sh measures it on and off)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = autotune and not deterministic  # input sizes repeat for hundreds of steps
        torch.backends.cudnn.deterministic = deterministic
        # TF32 tensor cores for the fp32 convolutions (fp32 accumulation; the inputs' 10-bit
        # mantissa is far below what changes a stylization). Matrix products stay IEEE fp32: the
        # L-BFGS history products (S^T Y, Y^T Y from one GEMM) feed a small triangular system, and
        # with small s.y a TF32-rounded diagonal can come out near zero or negative and the solve
        # blows up; the Gram products cost little next to the convolutions. No-ops on CPUs.
        torch.backends.cudnn.conv.fp32_precision = "ieee" if deterministic else "tf32"  # type: ignore[attr-defined]  # not in torch's stubs
        torch.backends.cuda.matmul.fp32_precision = "ieee"


def prefers_channels_last(device: torch.device) -> bool:
    """NHWC feeds tensor cores without layout transposes on CUDA; on CPU it measured slower
    (4.49 against 4.30 s per evaluation at 512x384 px with oneDNN), so CPUs keep NCHW."""
    return device.type == "cuda"
