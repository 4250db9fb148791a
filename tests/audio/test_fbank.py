"""Fbank features: layout, utterance normalisation, resampling, bad input."""
from __future__ import annotations

import math

import pytest
import torch

from speechkit.audio.fbank import Fbank, FbankSpec, utterance_cmvn
from speechkit.errors import AudioError


def tone(frequency: float, seconds: float, sample_rate: int) -> torch.Tensor:
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    return 0.5 * torch.sin(2 * math.pi * frequency * t)


def test_layout_and_normalisation() -> None:
    fbank = Fbank()
    assert fbank.spec.hop_length == 160 and fbank.spec.window_length == 400 and fbank.spec.frame_rate == 100
    wav = tone(440.0, 1.0, 16000) + 0.01 * torch.randn(16000, generator=torch.Generator().manual_seed(0))
    features = fbank(wav, 16000)
    assert features.shape == (fbank.num_frames(16000), 80) == (101, 80)
    assert torch.allclose(features.mean(0), torch.zeros(80), atol=1e-4)
    assert torch.allclose(features.std(0, unbiased=False), torch.ones(80), atol=1e-3)
    # gain does not change normalised features (up to the log floor in near-empty bins)
    assert torch.allclose(fbank(wav * 0.5, 16000), features, atol=1e-2)


def test_the_tone_lands_in_the_right_mel_bins() -> None:
    raw = Fbank(FbankSpec(normalize=False))
    low, high = raw(tone(300.0, 0.5, 16000), 16000).mean(0), raw(tone(3000.0, 0.5, 16000), 16000).mean(0)
    assert int(low.argmax()) < int(high.argmax())


def test_other_rates_are_resampled() -> None:
    fbank = Fbank(FbankSpec(normalize=False))
    native = fbank(tone(500.0, 1.0, 16000), 16000)
    resampled = fbank(tone(500.0, 1.0, 8000), 8000)
    assert resampled.shape == native.shape
    assert int(resampled.mean(0).argmax()) == int(native.mean(0).argmax())


def test_constant_channels_stay_finite() -> None:
    assert torch.isfinite(utterance_cmvn(torch.ones(10, 4))).all()


def test_bad_input_is_refused() -> None:
    fbank = Fbank()
    with pytest.raises(AudioError, match="mono"):
        fbank(torch.zeros(2, 1600), 16000)
    with pytest.raises(AudioError, match="sample_rate"):
        fbank(torch.zeros(1600), 0)
    with pytest.raises(AudioError, match="empty"):
        fbank(torch.zeros(0), 16000)
