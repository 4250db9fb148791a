"""Convolutional subsampling of feature frames before a Transformer encoder."""
from __future__ import annotations

import torch
from torch import nn


class ConvSubsampling(nn.Module):
    """``num_layers`` Conv2d (kernel 3, stride 2, no padding) + ReLU over time x frequency, then a
    linear projection of channels x remaining bins to ``d_model``: time shrinks ``2 ** num_layers``.

    Without padding, an output frame only sees input frames ``[s*i, s*i + receptive)``, and a
    valid output (index < :meth:`output_lengths`) only sees valid input frames, so right padding
    never changes the valid outputs.

    Args:
        num_features: input feature size F.
        d_model: output size.
        channels: convolution channels.
        num_layers: stride-2 layers (1..3).
    """

    def __init__(self, num_features: int, d_model: int, *, channels: int, num_layers: int = 2) -> None:
        super().__init__()
        if not 1 <= num_layers <= 3:
            raise ValueError(f"ConvSubsampling num_layers must be 1..3, got {num_layers}")
        layers: list[nn.Module] = []
        bins = num_features
        for index in range(num_layers):
            layers += [nn.Conv2d(1 if index == 0 else channels, channels, kernel_size=3, stride=2), nn.ReLU()]
            bins = (bins - 1) // 2
        if bins < 1:
            raise ValueError(f"{num_features} feature bins are too few for {num_layers} stride-2 layers")
        self.num_layers = num_layers
        self.convs = nn.Sequential(*layers)
        self.projection = nn.Linear(channels * bins, d_model)

    @property
    def factor(self) -> int:
        """Input frames per output frame."""
        return 2**self.num_layers

    @property
    def min_input_frames(self) -> int:
        """The fewest input frames that give one output frame."""
        return 2 ** (self.num_layers + 1) - 1

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """LongTensor[B] input frames -> LongTensor[B] output frames (0 if too short)."""
        for _ in range(self.num_layers):
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor")
        return lengths.clamp_min(0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: FloatTensor[B, T, F] -> FloatTensor[B, T', d_model], T' = output_lengths(T)."""
        x = self.convs(features.unsqueeze(1))  # [B, C, T', F']
        batch, channels, frames, bins = x.shape
        return self.projection(x.transpose(1, 2).reshape(batch, frames, channels * bins))
