"""Log-mel analysis shared by the mel codecs and the vocoders that invert them.

One :class:`MelSpec` describes the feature layout (rate, FFT size, hop, bins, band edges); the
codec that extracts features and the vocoder that inverts them are built from the same values,
so the pair always agrees. Features are the natural log of the *magnitude* mel spectrogram
(floored at ``1e-5``), frames centred on ``t * hop_length`` (``T = S // hop_length + 1``).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from speechkit.errors import AudioError, ConfigError

#: Floor applied before the log, so silence maps to a finite value (log(1e-5) ~= -11.5).
LOG_FLOOR = 1e-5


@dataclasses.dataclass(frozen=True)
class MelSpec:
    """Layout of a log-mel feature stream.

    Attributes:
        sample_rate: Hz of the waveform.
        n_fft: FFT size (and Hann window length) of the analysis.
        hop_length: samples between frames; the frame rate is ``sample_rate / hop_length``.
        num_mels: mel bins ``D``.
        f_min, f_max: band edges in Hz (``f_max <= 0`` means Nyquist).
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    num_mels: int = 80
    f_min: float = 0.0
    f_max: float = 0.0

    def __post_init__(self) -> None:
        problems = [f"{name} {getattr(self, name)} must be >= {low}" for name, low in
                    (("sample_rate", 1), ("n_fft", 2), ("hop_length", 1), ("num_mels", 1)) if getattr(self, name) < low]
        if not problems and not 0.0 <= self.f_min < self.upper_edge <= self.sample_rate / 2:
            problems.append(f"the band {self.f_min:g}-{self.upper_edge:g} Hz must lie within 0-{self.sample_rate / 2:g} "
                            "Hz (Nyquist) with f_min below f_max")
        if problems:
            raise ConfigError(f"mel analysis: {'; '.join(problems)}.")

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def upper_edge(self) -> float:
        """``f_max`` resolved (Nyquist when unset)."""
        return self.f_max if self.f_max > 0 else self.sample_rate / 2

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples (centred analysis)."""
        return num_samples // self.hop_length + 1


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((math.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


def mel_filterbank(spec: MelSpec) -> torch.Tensor:
    """Triangular, area-normalised mel filters: FloatTensor[num_mels, n_fft // 2 + 1]."""
    bins = spec.n_fft // 2 + 1
    fft_hz = np.linspace(0.0, spec.sample_rate / 2, bins)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(spec.f_min), _hz_to_mel(spec.upper_edge), spec.num_mels + 2))
    widths = np.diff(edges_hz)
    slopes = edges_hz[:, None] - fft_hz[None, :]  # [num_mels + 2, bins]
    lower = -slopes[:-2] / widths[:-1, None]
    upper = slopes[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]  # equal area per filter
    return torch.from_numpy(weights.astype(np.float32))


class LogMel:
    """Waveform -> log-mel frames with a fixed :class:`MelSpec` (filters computed once)."""

    def __init__(self, spec: MelSpec) -> None:
        if spec.n_fft < spec.hop_length:
            raise AudioError(f"n_fft ({spec.n_fft}) must be >= hop_length ({spec.hop_length}).")
        self.spec = spec
        self.filters = mel_filterbank(spec)  # [D, F]
        self.window = torch.hann_window(spec.n_fft)

    def magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """wav: FloatTensor[S] or [B, S] -> linear STFT magnitude FloatTensor[..., F, T]."""
        stft = torch.stft(
            wav, self.spec.n_fft, self.spec.hop_length, window=self.window.to(wav.device),
            center=True, pad_mode="reflect" if wav.shape[-1] > self.spec.n_fft // 2 else "constant",
            return_complex=True,
        )
        return stft.abs()

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """wav: FloatTensor[S] -> log-mel FloatTensor[T, D]; also batched [B, S] -> [B, T, D]."""
        mel = self.filters.to(wav.device) @ self.magnitude(wav)  # [..., D, T]
        return torch.log(mel.clamp_min(LOG_FLOOR)).transpose(-1, -2).contiguous()


def check_mono_waveform(wav: object, where: str = "waveform") -> torch.Tensor:
    """Return ``wav`` as a contiguous float32 FloatTensor[S]; :class:`AudioError` if it is not one.

    Accepts a 1-D torch tensor or numpy array; refuses multi-channel (2-D) input, integer
    samples, empty or non-finite signals, with a message naming the fix.
    """
    if isinstance(wav, np.ndarray):
        wav = torch.from_numpy(np.ascontiguousarray(wav))
    if not isinstance(wav, torch.Tensor):
        raise AudioError(f"{where}: expected a 1-D float tensor of samples, got {type(wav).__name__}.")
    if wav.dim() != 1:
        raise AudioError(
            f"{where}: expected mono FloatTensor[S], got shape {tuple(wav.shape)}. Downmix "
            "multi-channel audio first (e.g. wav.mean(0)) or load it with speechkit.audio.io.load_audio."
        )
    if not torch.is_floating_point(wav):
        raise AudioError(
            f"{where}: expected float samples in [-1, 1], got dtype {wav.dtype}. Convert integer PCM "
            "with wav.float() / 32768."
        )
    if wav.numel() == 0:
        raise AudioError(f"{where}: the waveform is empty (0 samples).")
    wav = wav.float().contiguous()
    if not torch.isfinite(wav).all():
        raise AudioError(f"{where}: the waveform contains NaN or infinite samples.")
    return wav
