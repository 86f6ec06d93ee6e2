"""Device names from users (``--device``, ``device=``) -> a ``torch.device`` that exists, or a one-line error."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device | None = "cpu") -> torch.device:
    """``"auto"`` (or None) picks the GPU when there is one; ``"cuda"``, ``"cuda:N"`` and ``"mps"`` are checked
    against this machine and this build of torch, so a missing GPU is a clear error, not a traceback from torch."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch is a CPU-only build" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"device {name!r} is not available: {build}; use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} is not available on this machine; use --device cpu (or auto)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {name!r}; use cpu, cuda, cuda:N, mps or auto")
    return device
