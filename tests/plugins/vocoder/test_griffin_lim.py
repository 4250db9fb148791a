"""griffin_lim vocoder: inverts log-mel of a harmonic tone back to a similar spectrum."""
from __future__ import annotations

import math

import pytest
import torch

from speechkit.audio.mel import LogMel, MelSpec
from speechkit.errors import AudioError
from speechkit.registry import build


def tone(seconds: float = 0.5, f0: float = 220.0) -> torch.Tensor:
    t = torch.arange(int(seconds * 16000)) / 16000
    return sum(0.2 / k * torch.sin(2 * math.pi * k * f0 * t) for k in range(1, 5)).float()


def test_round_trip_keeps_length_and_spectrum():
    spec = MelSpec(hop_length=256)
    log_mel = LogMel(spec)
    wav = tone()
    features = log_mel(wav)
    vocoder = build("vocoder", {"name": "griffin_lim", "iterations": 16}, sample_rate=16000, hop_length=256, num_mels=80)
    out = vocoder.synthesize(features)
    assert out.shape == ((features.shape[0] - 1) * 256,)
    error = (log_mel(out)[2:-2] - features[2:-2]).abs().mean().item()
    assert error < 1.0, error
    assert vocoder.sample_rate == 16000 and not vocoder.trainable


def test_deterministic_and_momentum_helps():
    log_mel = LogMel(MelSpec())
    features = log_mel(tone(0.4, 180.0))
    fast = build("vocoder", {"name": "griffin_lim", "iterations": 8, "momentum": 0.99})
    classic = build("vocoder", {"name": "griffin_lim", "iterations": 8, "momentum": 0.0})
    assert torch.equal(fast.synthesize(features), fast.synthesize(features))
    fast_error = (log_mel(fast.synthesize(features)) - features).abs().mean()
    classic_error = (log_mel(classic.synthesize(features)) - features).abs().mean()
    assert fast_error < classic_error


def test_wrong_feature_shape_is_a_clear_error():
    vocoder = build("vocoder", {"name": "griffin_lim"}, num_mels=80)
    with pytest.raises(AudioError, match=r"FloatTensor\[T, 80\]"):
        vocoder.synthesize(torch.zeros(10, 40))
    with pytest.raises(AudioError, match="0 frames"):
        vocoder.synthesize(torch.zeros(0, 80))
