"""Spectral training losses for neural vocoders (no discriminator needed to start).

* multi-resolution STFT loss: at several FFT sizes, spectral convergence (relative Frobenius
  error of the magnitudes) plus L1 between log magnitudes (Yamamoto et al. 2020);
* log-mel L1 at the feature layout the vocoder inverts (what the codec will hand it).
"""
from __future__ import annotations

import torch
from torch import nn

from speechkit.audio.mel import LogMel, MelSpec

#: (n_fft, hop) pairs; short windows catch onsets, long ones catch harmonics.
DEFAULT_RESOLUTIONS: tuple[tuple[int, int], ...] = ((256, 64), (512, 128), (1024, 256), (2048, 512))


class MultiResolutionSTFTLoss(nn.Module):
    """``forward(prediction, target)`` with wav FloatTensor[B, S] each -> (stft_loss, mel_loss)."""

    def __init__(self, mel_spec: MelSpec, resolutions: tuple[tuple[int, int], ...] = DEFAULT_RESOLUTIONS) -> None:
        super().__init__()
        self.resolutions = resolutions
        self.windows = {n_fft: torch.hann_window(n_fft) for n_fft, _ in resolutions}
        self.log_mel = LogMel(mel_spec)

    def _magnitude(self, wav: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
        stft = torch.stft(wav, n_fft, hop, window=self.windows[n_fft], center=True, return_complex=True)
        return (stft.real.square() + stft.imag.square()).clamp_min(1e-9).sqrt()  # [B, F, T]

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stft_loss = prediction.new_zeros(())
        for n_fft, hop in self.resolutions:
            predicted = self._magnitude(prediction, n_fft, hop)
            reference = self._magnitude(target, n_fft, hop)
            convergence = torch.linalg.norm(reference - predicted) / torch.linalg.norm(reference).clamp_min(1e-7)
            log_distance = (predicted.log() - reference.log()).abs().mean()
            stft_loss = stft_loss + convergence + log_distance
        mel_loss = (self.log_mel(prediction) - self.log_mel(target)).abs().mean()
        return stft_loss / len(self.resolutions), mel_loss
