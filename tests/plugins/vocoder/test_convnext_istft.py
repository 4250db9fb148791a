"""convnext_istft vocoder: trains (loss falls), resumes from a checkpoint, saves and loads."""
from __future__ import annotations

import math

import pytest
import torch

from speechkit.audio.mel import LogMel, MelSpec
from speechkit.errors import ConfigError
from speechkit.registry import build

TINY = {"name": "convnext_istft", "channels": 32, "layers": 2, "batch_size": 4, "segment_frames": 8,
        "checkpoint_every": 10, "learning_rate": 3e-3}


def pairs(count: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    log_mel = LogMel(MelSpec())
    out = []
    for index in range(count):
        t = torch.arange(8000) / 16000
        wav = sum(0.2 / k * torch.sin(2 * math.pi * k * (150 + 30 * index) * t) for k in range(1, 4)).float()
        out.append((log_mel(wav), wav))
    return out


def spectral_error(vocoder, data) -> float:
    log_mel = LogMel(MelSpec())
    return sum((log_mel(vocoder.synthesize(mel)) - mel).abs().mean().item() for mel, _ in data) / len(data)


def test_training_lowers_the_error_and_output_has_the_right_length():
    data = pairs()
    untrained = build("vocoder", {**TINY, "steps": 1})
    untrained.fit(data)
    trained = build("vocoder", {**TINY, "steps": 60})
    trained.fit(data)
    assert spectral_error(trained, data) < 0.7 * spectral_error(untrained, data)
    mel = data[0][0]
    assert trained.synthesize(mel).shape == ((mel.shape[0] - 1) * 256,)


def test_killed_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from speechkit.plugins.vocoder import vocoder_losses

    data = pairs(2)
    straight = build("vocoder", {**TINY, "steps": 20})
    straight.fit(data)

    original_forward = vocoder_losses.MultiResolutionSTFTLoss.forward
    calls = {"count": 0}

    def dies_at_step_15(self, prediction, target):
        calls["count"] += 1
        if calls["count"] == 15:
            raise KeyboardInterrupt("simulated kill")
        return original_forward(self, prediction, target)

    monkeypatch.setattr(vocoder_losses.MultiResolutionSTFTLoss, "forward", dies_at_step_15)
    with pytest.raises(KeyboardInterrupt):
        build("vocoder", {**TINY, "steps": 20}).fit(data, tmp_path)
    monkeypatch.setattr(vocoder_losses.MultiResolutionSTFTLoss, "forward", original_forward)
    assert (tmp_path / "vocoder_checkpoint.pt").is_file()  # written at step 10

    resumed = build("vocoder", {**TINY, "steps": 20})
    resumed.fit(data, tmp_path)
    mel = data[0][0]
    assert torch.allclose(resumed.synthesize(mel), straight.synthesize(mel), atol=1e-5)


def test_save_load_round_trip_and_errors(tmp_path):
    data = pairs(2)
    vocoder = build("vocoder", {**TINY, "steps": 3})
    with pytest.raises(ConfigError, match="fit"):
        vocoder.synthesize(data[0][0])
    vocoder.fit(data)
    vocoder.save(tmp_path)
    restored = build("vocoder", {**TINY, "steps": 3})
    restored.load(tmp_path)
    assert torch.equal(restored.synthesize(data[0][0]), vocoder.synthesize(data[0][0]))
    with pytest.raises(ConfigError, match="stage 3"):
        restored.load(tmp_path / "missing")
    with pytest.raises(ConfigError, match="segment_frames"):
        build("vocoder", {**TINY, "segment_frames": 400}).fit(data)


@pytest.mark.parametrize("bad, message", [({"steps": -1}, "steps must be >= 1"), ({"layers": 0}, "layers"),
                                          ({"learning_rate": 0.0}, "learning_rate must be > 0"),
                                          ({"max_minutes": -2.0}, "max_minutes must be >= 0"),
                                          ({"threads": -1}, "threads must be >= 0")])
def test_impossible_options_are_config_errors(bad: dict, message: str) -> None:
    """Before, steps -1 'trained' nothing and wrote an untrained vocoder, max_minutes -2 trained on."""
    with pytest.raises(ConfigError, match=f"convnext_istft: {message}"):
        build("vocoder", {**TINY, **bad})
    build("vocoder", {**TINY, "threads": 0, "max_minutes": 0.0, "mel_loss_weight": 0.0})  # 0s mean something here
