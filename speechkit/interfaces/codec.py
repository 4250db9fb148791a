"""Codec: waveform <-> discrete acoustic tokens (residual VQ levels x frames)."""
from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from speechkit.interfaces.base import Component

if TYPE_CHECKING:
    import torch


class Codec(Component):
    """Turns audio into ``num_quantizers`` parallel token streams and back.

    Attributes (properties):
        sample_rate: Hz of the waveforms ``encode`` takes and ``decode`` returns.
        frame_rate: token frames per second (e.g. 75 for EnCodec 24 kHz).
        num_quantizers: number of residual levels ``L``.
        codebook_size: tokens per level ``K`` (ids are ``0..K-1``).
        trainable: True if :meth:`fit` must run before encoding (then also save/load).
    """

    trainable: bool = False

    @property
    @abc.abstractmethod
    def sample_rate(self) -> int: ...

    @property
    @abc.abstractmethod
    def frame_rate(self) -> float: ...

    @property
    @abc.abstractmethod
    def num_quantizers(self) -> int: ...

    @property
    @abc.abstractmethod
    def codebook_size(self) -> int: ...

    @abc.abstractmethod
    def encode(self, wav: "torch.Tensor") -> "torch.Tensor":
        """wav: FloatTensor[S] mono at ``sample_rate`` in [-1, 1] -> codes: LongTensor[L, T].

        ``T`` is about ``S / sample_rate * frame_rate``.
        """

    @abc.abstractmethod
    def decode(self, codes: "torch.Tensor") -> "torch.Tensor":
        """codes: LongTensor[L', T] with ``1 <= L' <= L`` (missing levels are treated as absent)
        -> wav: FloatTensor[S] at ``sample_rate``."""

    def fit(self, wavs: Iterable["torch.Tensor"], work_dir: str | Path | None = None) -> None:
        """Train on mono waveforms at ``sample_rate`` (trainable codecs only)."""
        raise NotImplementedError(f"codec {self.registered_name!r} is not trainable")

    def save(self, directory: str | Path) -> None:
        """Write trained state (trainable codecs; pretrained ones may record their weight path)."""

    def load(self, directory: str | Path) -> None:
        """Restore what :meth:`save` wrote."""
