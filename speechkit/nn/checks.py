"""Checks the token models share: constructor context, Transformer width, and token-ID ranges.

Each raises the project's exceptions (:class:`ConfigError` for what a config or a builder got
wrong, :class:`DataError` for bad input tensors) with a message that names the component and the
offending value.
"""
from __future__ import annotations

import torch

from speechkit.errors import ConfigError, DataError


def require_int_context(component: str, minimum: int = 1, **values: object) -> None:
    """Check that every context value a component is built with is an int ``>= minimum``.

    Args:
        component: how the message names the component, e.g. ``"ar_lm 'valle_ar'"``.
        minimum: the smallest valid value.
        values: context name -> value, checked in the order given.

    Raises:
        ConfigError: naming the first missing or invalid value.
    """
    wanted = "<positive int>" if minimum == 1 else f"<int >= {minimum}>"
    for name, value in values.items():
        if not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{component} needs context {name}={wanted} when built, got {value!r}.")


def check_attention_width(component: str, d_model: int, num_heads: int) -> None:
    """Raise :class:`ConfigError` unless ``d_model`` is even (sinusoidal positions) and divisible
    by ``num_heads``; ``component`` names the component in the message."""
    if d_model % num_heads or d_model % 2:
        raise ConfigError(f"{component}: d_model {d_model} must be even and divisible by num_heads {num_heads}.")


def check_id_range(component: str, name: str, values: torch.Tensor, valid: torch.Tensor, upper: int) -> None:
    """Raise :class:`DataError` unless ``0 <= values < upper`` wherever ``valid`` is True.

    Args:
        component: prefix of the message, e.g. ``"valle_ar"``.
        name: the input's name (e.g. ``"phones"``).
        values: LongTensor of any shape.
        valid: BoolTensor broadcastable to ``values`` (with as many dimensions); one with another
            number of dimensions means "check every value".
        upper: the exclusive upper bound.
    """
    if values.numel() == 0:
        return
    chosen = values[valid.expand_as(values)] if valid.dim() == values.dim() else values
    if chosen.numel() and (int(chosen.min()) < 0 or int(chosen.max()) >= upper):
        low, high = int(chosen.min()), int(chosen.max())
        raise DataError(f"{component}: {name} must lie in [0, {upper}), got values in [{low}, {high}].")
