"""Learning-rate schedules: linear warm-up, then noam / cosine / linear decay or constant.

Each schedule is a multiplier of the peak learning rate as a function of the 1-based optimizer
step, wrapped in a ``LambdaLR`` (whose state dict holds plain numbers only, so checkpoints load
with ``weights_only=True``).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from speechkit.errors import ConfigError


def lr_multiplier(
    step: int, *, schedule: str, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> float:
    """Multiplier of the peak lr for optimizer step ``step`` (1-based: the step being taken).

    * warm-up (all schedules): ``step / warmup_steps`` while ``step <= warmup_steps``;
    * ``noam``: ``sqrt(warmup_steps / step)`` afterwards (inverse square root, peak 1 at warm-up);
    * ``cosine``: half a cosine from 1 down to ``min_lr_ratio`` at ``total_steps``;
    * ``linear``: a straight line from 1 down to ``min_lr_ratio`` at ``total_steps``;
    * ``constant``: 1.
    """
    step = max(step, 1)
    if warmup_steps > 0 and step <= warmup_steps:
        return step / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "noam":
        return math.sqrt(warmup_steps / step)
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    if schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "linear":
        shape = 1.0 - progress
    else:
        raise ConfigError(f"Unknown schedule {schedule!r}; choose noam, cosine, linear or constant.")
    return min_lr_ratio + (1.0 - min_lr_ratio) * shape


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    schedule: str,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`lr_multiplier`; call ``scheduler.step()`` after each
    ``optimizer.step()`` (the lr set for optimizer step ``n`` is ``lr * lr_multiplier(n)``)."""

    def multiplier(completed_steps: int) -> float:
        return lr_multiplier(
            completed_steps + 1, schedule=schedule, warmup_steps=warmup_steps,
            total_steps=total_steps, min_lr_ratio=min_lr_ratio,
        )

    lambda_fn: Callable[[int], float] = multiplier
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda_fn)
