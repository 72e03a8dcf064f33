"""Device choice at run time: ``auto`` takes CUDA when present, else the CPU; under torchrun each
process takes its own GPU, ``cuda:LOCAL_RANK``. Nothing else in the package names a device."""
from __future__ import annotations

import torch

from ..errors import UsageError
from .distributed import current


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` → a usable torch.device, or UsageError saying why not.
    Under torchrun (several processes, distributed.py) a CUDA device is this process's own."""
    device = _resolve(spec)
    world = current()
    if world.size > 1 and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def _resolve(spec: str) -> torch.device:
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {spec!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec}: CUDA is not available on this machine "
                             "(no GPU or a CPU-only torch build); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif device.type != "cpu":
        raise UsageError(f"--device {spec!r}: unsupported device type; use auto, cpu, cuda or cuda:N")
    return device
