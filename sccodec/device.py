"""Which torch device the transforms run on: ``auto`` picks CUDA when it is there, else the CPU."""
from __future__ import annotations

import torch

from sccodec.errors import ParameterError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` -> a torch device; a clear error for one that is
    unknown or absent, so that a command fails before it reads any input."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ParameterError(f"unknown device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("CUDA was requested but is not available on this machine")
    return dev
