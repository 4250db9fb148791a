"""Vocoder: acoustic features (e.g. log-mel frames) -> waveform."""
from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from speechkit.interfaces.base import Component

if TYPE_CHECKING:
    import torch


class Vocoder(Component):
    """Inverts a feature representation. The feature layout is given by the neighbour that
    builds it (a codec passes ``sample_rate``, ``hop_length`` and ``num_mels`` as context).

    Attributes:
        trainable: True if :meth:`fit` must run before :meth:`synthesize`.
    """

    trainable: bool = False

    @property
    @abc.abstractmethod
    def sample_rate(self) -> int: ...

    @abc.abstractmethod
    def synthesize(self, features: "torch.Tensor") -> "torch.Tensor":
        """features: FloatTensor[T, D] -> wav: FloatTensor[S], ``S ~= T * hop_length``."""

    def fit(
        self,
        pairs: Iterable[tuple["torch.Tensor", "torch.Tensor"]],
        work_dir: str | Path | None = None,
    ) -> None:
        """Train on (features FloatTensor[T, D], wav FloatTensor[S]) pairs (trainable only)."""
        raise NotImplementedError(f"vocoder {self.registered_name!r} is not trainable")

    def save(self, directory: str | Path) -> None:
        """Write trained state (no-op for DSP vocoders)."""

    def load(self, directory: str | Path) -> None:
        """Restore what :meth:`save` wrote (no-op for DSP vocoders)."""
