"""Log-mel filterbank features for recognition models: 16 kHz, 25 ms window, 10 ms hop, with
utterance-level mean/variance normalisation.

The analysis itself is :class:`speechkit.audio.mel.LogMel` (the same filters the mel codecs use);
this module fixes the ASR-style layout and adds the per-utterance normalisation, so a model's
features do not depend on the recording gain or on the other items of a batch.
"""
from __future__ import annotations

import dataclasses

import torch

from speechkit.audio.io import resample_audio
from speechkit.audio.mel import LogMel, MelSpec, check_mono_waveform
from speechkit.errors import AudioError

#: Added to the standard deviation so a constant (e.g. silent) feature channel stays finite.
VARIANCE_FLOOR = 1e-5


@dataclasses.dataclass(frozen=True)
class FbankSpec:
    """Layout of the features.

    Attributes:
        sample_rate: Hz the model works at (input at another rate is resampled).
        num_mels: feature size ``F``.
        window_ms, hop_ms: analysis window and frame shift (the frame rate is ``1000 / hop_ms``).
        normalize: subtract the utterance mean and divide by its standard deviation per channel.
    """

    sample_rate: int = 16000
    num_mels: int = 80
    window_ms: float = 25.0
    hop_ms: float = 10.0
    normalize: bool = True

    @property
    def hop_length(self) -> int:
        """Samples between frames."""
        return int(round(self.sample_rate * self.hop_ms / 1000.0))

    @property
    def window_length(self) -> int:
        """Samples per analysis window (the FFT size)."""
        return int(round(self.sample_rate * self.window_ms / 1000.0))

    @property
    def frame_rate(self) -> float:
        """Feature frames per second."""
        return self.sample_rate / self.hop_length


def utterance_cmvn(features: torch.Tensor) -> torch.Tensor:
    """features: FloatTensor[T, F] -> FloatTensor[T, F] with zero mean and unit variance per channel."""
    mean = features.mean(dim=0, keepdim=True)
    std = features.std(dim=0, unbiased=False, keepdim=True)
    return (features - mean) / (std + VARIANCE_FLOOR)


class Fbank:
    """Waveform -> normalised log-mel features FloatTensor[T, F] (``T = S // hop + 1``)."""

    def __init__(self, spec: FbankSpec | None = None) -> None:
        self.spec = spec or FbankSpec()
        if self.spec.window_length < self.spec.hop_length:
            raise AudioError(f"Fbank window ({self.spec.window_ms} ms) must be >= hop ({self.spec.hop_ms} ms).")
        self.log_mel = LogMel(
            MelSpec(
                sample_rate=self.spec.sample_rate,
                n_fft=self.spec.window_length,
                hop_length=self.spec.hop_length,
                num_mels=self.spec.num_mels,
            )
        )

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples at the model rate."""
        return num_samples // self.spec.hop_length + 1

    def __call__(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """wav: FloatTensor[S] at ``sample_rate`` -> FloatTensor[T, F].

        Raises:
            AudioError: not a mono float waveform, empty, non-finite, or a bad sample rate.
        """
        wav = check_mono_waveform(wav)
        if not isinstance(sample_rate, int) or sample_rate <= 0:
            raise AudioError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}.")
        if sample_rate != self.spec.sample_rate:
            wav = torch.from_numpy(resample_audio(wav.numpy(), sample_rate, self.spec.sample_rate))
        features = self.log_mel(wav)  # [T, F]
        return utterance_cmvn(features) if self.spec.normalize else features
