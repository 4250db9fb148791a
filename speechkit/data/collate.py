"""Generic padding helpers for collate functions: pad variable-length tensors, build masks."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from speechkit.errors import DataError


def pad_sequences(
    sequences: Sequence[torch.Tensor], padding_value: int | float = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad tensors along their last (time) axis into one batch.

    Args:
        sequences: ``B`` tensors of one dtype, each ``[T_b]`` or ``[L, T_b]`` (same ``L``).
        padding_value: value written after each sequence's end.

    Returns:
        ``padded``: ``[B, T_max]`` or ``[B, L, T_max]``; ``lengths``: LongTensor[B] of ``T_b``.

    Raises:
        DataError: empty input, or tensors whose rank, leading shape or dtype differ.
    """
    if len(sequences) == 0:
        raise DataError("pad_sequences got no sequences; a batch needs at least one item.")
    first = sequences[0]
    if first.dim() not in (1, 2):
        raise DataError(f"pad_sequences takes [T] or [L, T] tensors, got shape {tuple(first.shape)}.")
    for index, tensor in enumerate(sequences):
        if tensor.shape[:-1] != first.shape[:-1] or tensor.dtype != first.dtype:
            raise DataError(
                f"Sequence {index} has shape {tuple(tensor.shape)} and dtype {tensor.dtype}; "
                f"expected leading shape {tuple(first.shape[:-1])} and dtype {first.dtype} like item 0."
            )
    lengths = torch.tensor([t.shape[-1] for t in sequences], dtype=torch.long)
    max_length = int(lengths.max())
    padded = first.new_full((len(sequences), *first.shape[:-1], max_length), padding_value)
    for index, tensor in enumerate(sequences):
        padded[index, ..., : tensor.shape[-1]] = tensor
    return padded, lengths


def lengths_to_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Validity mask from lengths: ``lengths`` LongTensor[B] -> BoolTensor[B, T], True inside.

    ``max_length`` defaults to ``lengths.max()``; a larger value pads the mask with False.
    """
    if lengths.dim() != 1:
        raise DataError(f"lengths must be a 1-D tensor, got shape {tuple(lengths.shape)}.")
    if max_length is None:
        max_length = int(lengths.max()) if lengths.numel() else 0
    positions = torch.arange(max_length, device=lengths.device)  # [T]
    return positions.unsqueeze(0) < lengths.unsqueeze(1)  # [B, T]


def lengths_to_padding_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """The complement of :func:`lengths_to_mask`: BoolTensor[B, T], True at padded positions
    (the convention of ``key_padding_mask`` in ``torch.nn.MultiheadAttention``)."""
    return ~lengths_to_mask(lengths, max_length)
