"""``band_energy``: a tiny non-trainable codec (quantised log band energies + noise resynthesis).

It is written as a plugin author would: it imports speechkit's public interface only and is found
through its ``speechkit.codec`` entry point, without any registration call.
"""
from __future__ import annotations

import dataclasses

import torch

from speechkit.interfaces import Codec


class BandEnergyCodec(Codec):
    """Each level codes the log energy of one frequency band of a frame, uniformly quantised."""

    @dataclasses.dataclass
    class Config:
        sample_rate: int = 8000
        hop_length: int = 160
        num_bands: int = 4
        levels: int = 32
        min_db: float = -80.0

    def __init__(self, config: "BandEnergyCodec.Config | None" = None, **context: object) -> None:
        super().__init__(config)
        self.n_fft = 4 * self.config.hop_length

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.sample_rate / self.config.hop_length

    @property
    def num_quantizers(self) -> int:
        return self.config.num_bands

    @property
    def codebook_size(self) -> int:
        return self.config.levels

    def _bands(self, bins: int) -> list[tuple[int, int]]:
        edges = torch.linspace(0, bins, self.config.num_bands + 1).round().long().tolist()
        return list(zip(edges[:-1], edges[1:]))

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav: FloatTensor[S] -> codes: LongTensor[num_bands, T], T = S // hop_length + 1."""
        if wav.dim() != 1:
            raise ValueError(f"band_energy encodes mono FloatTensor[S], got shape {tuple(wav.shape)}")
        window = torch.hann_window(self.n_fft)
        spec = torch.stft(wav, self.n_fft, self.config.hop_length, window=window, return_complex=True)
        power = spec.abs().pow(2)  # [F, T]
        energies = torch.stack([power[a:b].mean(0) for a, b in self._bands(power.shape[0])])
        db = 10 * torch.log10(energies + 1e-10)
        scaled = (db - self.config.min_db) / -self.config.min_db * (self.config.levels - 1)
        return scaled.round().clamp(0, self.config.levels - 1).long()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: LongTensor[L', T] -> FloatTensor[(T - 1) * hop_length] of band-shaped noise."""
        frames = codes.shape[1]
        db = codes.float() / (self.config.levels - 1) * -self.config.min_db + self.config.min_db
        bins = self.n_fft // 2 + 1
        magnitude = torch.zeros(bins, frames)
        for level, (a, b) in enumerate(self._bands(bins)[: codes.shape[0]]):
            magnitude[a:b] = torch.sqrt(10 ** (db[level] / 10)).unsqueeze(0)
        phase = torch.rand(bins, frames, generator=torch.Generator().manual_seed(0)) * 2 * torch.pi
        spec = torch.polar(magnitude, phase)
        window = torch.hann_window(self.n_fft)
        wav = torch.istft(spec, self.n_fft, self.config.hop_length, window=window)
        return wav.float()
