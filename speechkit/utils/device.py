"""Checking a device name from a user (a CLI option or a config key) before anything is put there."""
from __future__ import annotations

import torch

from speechkit.errors import ConfigError


def checked_device(device: str | torch.device, what: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device` that exists here.

    ``what`` names the option in the messages (e.g. ``"--device"`` or ``"train.device"``).

    Raises:
        ConfigError: not a torch device name, CUDA asked for where torch sees none (a CPU build
            or no GPU), or a CUDA index beyond the GPUs present.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"{what} {str(device)!r} is not a torch device ({error}); give cpu, cuda or cuda:N.") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what} {device}: CUDA is not available here (a CPU build of torch, or no GPU "
                              "visible); use cpu.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(f"{what} {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                              f"cuda:0 to cuda:{torch.cuda.device_count() - 1}.")
    return resolved
