"""Sinusoidal positional encoding with a learned scale (VALL-E), computed per segment."""
from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalPositionalEncoding(nn.Module):
    """``x * sqrt(d) + alpha * PE(positions)`` with a learned scalar ``alpha`` (VALL-E).

    Positions are given explicitly, so each segment (phones, acoustic tokens) can start at 0 and
    each sequence of a padded batch can have its own offsets (left padding, decoding steps).

    Args:
        d_model: feature size (even).
        dropout: dropout applied after adding the encoding.
        scale_input: multiply the input by ``sqrt(d_model)`` first (embeddings are small).
    """

    def __init__(self, d_model: int, *, dropout: float = 0.0, scale_input: bool = True) -> None:
        super().__init__()
        if d_model % 2:
            raise ValueError(f"SinusoidalPositionalEncoding needs an even d_model, got {d_model}")
        self.d_model = d_model
        self.input_scale = math.sqrt(d_model) if scale_input else 1.0
        self.alpha = nn.Parameter(torch.ones(1))
        self.dropout = nn.Dropout(dropout)
        inverse_frequency = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2).float() / d_model)
        self.register_buffer("inverse_frequency", inverse_frequency, persistent=False)

    def encoding(self, positions: torch.Tensor) -> torch.Tensor:
        """positions: LongTensor[..., T] -> FloatTensor[..., T, d_model] (sin | cos halves)."""
        angles = positions.to(self.inverse_frequency.dtype).unsqueeze(-1) * self.inverse_frequency
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x: FloatTensor[B, T, D], positions: LongTensor[B, T] or [T] -> FloatTensor[B, T, D]."""
        encoding = self.encoding(positions).to(x.dtype)
        return self.dropout(x * self.input_scale + self.alpha * encoding)
