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
    """Raise :class:`ConfigError` unless ``num_heads >= 1`` and ``d_model`` is positive, even
    (sinusoidal positions) and divisible by ``num_heads``; ``component`` names the component."""
    if num_heads < 1 or d_model < 2:
        raise ConfigError(f"{component}: d_model and num_heads must be positive, got {d_model} and {num_heads}.")
    if d_model % num_heads or d_model % 2:
        raise ConfigError(f"{component}: d_model {d_model} must be even and divisible by num_heads {num_heads}.")


def check_transformer_size(component: str, d_model: int, num_heads: int, num_layers: int, ffn_dim: int,
                           dropout: float) -> None:
    """Raise :class:`ConfigError` unless a Transformer's sizes can be built and mean something: at
    least one layer, a feed-forward width >= 1, the width of :func:`check_attention_width`, and a
    dropout probability in [0, 1)."""
    for name, value in (("num_layers", num_layers), ("ffn_dim", ffn_dim)):
        if value < 1:
            raise ConfigError(f"{component}: {name} must be >= 1, got {value}.")
    check_attention_width(component, d_model, num_heads)
    check_dropout(component, dropout)


def check_dropout(component: str, dropout: float) -> None:
    """Raise :class:`ConfigError` unless ``0 <= dropout < 1``."""
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"{component}: dropout must lie in [0, 1), got {dropout}.")


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
