"""Padding helpers: pad [T] and [L, T] sequences, masks from lengths."""
from __future__ import annotations

import pytest
import torch

from speechkit.data.collate import lengths_to_mask, lengths_to_padding_mask, pad_sequences
from speechkit.errors import DataError


def test_pad_1d_and_2d_sequences():
    padded, lengths = pad_sequences([torch.tensor([1, 2, 3]), torch.tensor([4])], padding_value=-1)
    assert padded.tolist() == [[1, 2, 3], [4, -1, -1]] and lengths.tolist() == [3, 1]
    codes = [torch.arange(6).view(2, 3), torch.arange(4).view(2, 2)]  # [L=2, T]
    padded, lengths = pad_sequences(codes)
    assert padded.shape == (2, 2, 3) and lengths.tolist() == [3, 2]
    assert padded[1].tolist() == [[0, 1, 0], [2, 3, 0]]


def test_masks_from_lengths():
    lengths = torch.tensor([2, 0, 3])
    assert lengths_to_mask(lengths).tolist() == [[True, True, False], [False] * 3, [True] * 3]
    assert lengths_to_mask(lengths, max_length=4).shape == (3, 4)
    assert torch.equal(lengths_to_padding_mask(lengths), ~lengths_to_mask(lengths))


def test_bad_inputs_are_clear_errors():
    with pytest.raises(DataError, match="no sequences"):
        pad_sequences([])
    with pytest.raises(DataError, match="leading shape"):
        pad_sequences([torch.zeros(2, 3), torch.zeros(3, 3)])
    with pytest.raises(DataError, match="dtype"):
        pad_sequences([torch.zeros(3), torch.zeros(3, dtype=torch.long)])
    with pytest.raises(DataError, match=r"\[T\] or \[L, T\]"):
        pad_sequences([torch.zeros(1, 2, 3)])
