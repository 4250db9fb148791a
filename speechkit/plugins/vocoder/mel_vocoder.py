"""Base of vocoders that invert log-mel frames: takes the codec's mel layout as build context."""
from __future__ import annotations

from typing import Any

from speechkit.audio.mel import MelSpec
from speechkit.interfaces.vocoder import Vocoder


class MelVocoder(Vocoder):
    """Holds ``mel_spec``, the log-mel analysis the features come from.

    The codec that builds the vocoder passes its layout as context (``sample_rate``,
    ``hop_length``, ``num_mels``, ``n_fft``, ``f_min``, ``f_max``), so a swapped codec never means
    editing the vocoder's config.
    """

    def __init__(
        self,
        config: Any = None,
        *,
        sample_rate: int = 16000,
        hop_length: int = 256,
        num_mels: int = 80,
        n_fft: int = 1024,
        f_min: float = 0.0,
        f_max: float = 0.0,
        **context: object,
    ) -> None:
        super().__init__(config)
        self.mel_spec = MelSpec(sample_rate, n_fft, hop_length, num_mels, f_min, f_max)

    @property
    def sample_rate(self) -> int:
        return self.mel_spec.sample_rate
