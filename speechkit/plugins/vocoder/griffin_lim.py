"""Griffin-Lim vocoder: the DSP floor for inverting log-mel frames (no training).

log-mel -> linear magnitude through the pseudo-inverse of the mel filterbank (clamped at zero),
then phase recovery with the accelerated ("fast") Griffin-Lim of Perraudin et al. 2013:
each iteration projects onto consistent spectrograms and extrapolates with a momentum term.
"""
from __future__ import annotations

import dataclasses

import torch

from speechkit.audio.mel import mel_filterbank
from speechkit.errors import AudioError
from speechkit.plugins.vocoder.mel_vocoder import MelVocoder
from speechkit.registry import VOCODER


def check_features(features: object, num_mels: int, where: str) -> torch.Tensor:
    """features: FloatTensor[T, num_mels] (checked) -> float32 contiguous copy."""
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[1] != num_mels:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise AudioError(f"{where}: expected log-mel FloatTensor[T, {num_mels}], got {shape}.")
    if features.shape[0] == 0:
        raise AudioError(f"{where}: got 0 frames; there is nothing to synthesize.")
    return features.float().contiguous()


@VOCODER.register("griffin_lim")
class GriffinLimVocoder(MelVocoder):
    """Inverts natural-log magnitude mel frames (the layout of :class:`speechkit.audio.mel.LogMel`).

    Context (from the codec that builds it): ``sample_rate``, ``hop_length``, ``num_mels``,
    optionally ``n_fft``, ``f_min``, ``f_max``.
    """

    trainable = False

    @dataclasses.dataclass
    class Config:
        """Options of the Griffin-Lim vocoder.

        Attributes:
            iterations: projection steps (quality saturates around 32-64).
            momentum: fast Griffin-Lim extrapolation (0 = classic Griffin-Lim; 0.99 recommended).
            power: exponent applied to the recovered magnitude (>1 sharpens formants).
            seed: seed of the random initial phase (decoding is deterministic).
        """

        iterations: int = 32
        momentum: float = 0.99
        power: float = 1.0
        seed: int = 0

    def __init__(self, config: "GriffinLimVocoder.Config | None" = None, **context: object) -> None:
        super().__init__(config, **context)  # mel layout from the codec: self.mel_spec
        self._inverse = torch.linalg.pinv(mel_filterbank(self.mel_spec))  # [F, D]
        self._window = torch.hann_window(self.mel_spec.n_fft)

    def synthesize(self, features: torch.Tensor) -> torch.Tensor:
        """features: log-mel FloatTensor[T, D] -> wav FloatTensor[(T - 1) * hop_length]."""
        features = check_features(features, self.mel_spec.num_mels, "griffin_lim.synthesize")
        magnitude = (self._inverse @ features.exp().T).clamp_min(0.0) ** self.config.power  # [F, T]
        return self.reconstruct_phase(magnitude)

    def reconstruct_phase(self, magnitude: torch.Tensor) -> torch.Tensor:
        """magnitude: FloatTensor[F, T] linear STFT magnitude -> wav FloatTensor[(T - 1) * hop]."""
        spec = self.mel_spec
        num_samples = (magnitude.shape[1] - 1) * spec.hop_length
        generator = torch.Generator().manual_seed(self.config.seed)
        phase = torch.rand(magnitude.shape, generator=generator) * 2 * torch.pi
        estimate = torch.polar(magnitude, phase)
        previous = torch.zeros_like(estimate)
        for _ in range(max(1, self.config.iterations)):
            wav = self._istft(estimate, num_samples)
            rebuilt = torch.stft(
                wav, spec.n_fft, spec.hop_length, window=self._window, center=True, return_complex=True
            )
            accelerated = rebuilt + self.config.momentum * (rebuilt - previous) if self.config.momentum else rebuilt
            previous = rebuilt
            estimate = torch.polar(magnitude, torch.angle(accelerated))
        return self._istft(estimate, num_samples)

    def _istft(self, stft: torch.Tensor, num_samples: int) -> torch.Tensor:
        spec = self.mel_spec
        return torch.istft(stft, spec.n_fft, spec.hop_length, window=self._window, center=True, length=num_samples)
