"""mel_rvq codec: fit on tiny synthetic audio, encode/decode shapes, persistence, errors."""
from __future__ import annotations

import math

import pytest
import torch

from speechkit.errors import AudioError, ConfigError
from speechkit.registry import build

SAMPLE_RATE = 16000


def sweep(seconds: float, low: float, high: float, seed: int) -> torch.Tensor:
    """A harmonic sine sweep with a little noise: FloatTensor[S]."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = low + (high - low) * t / seconds
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SAMPLE_RATE
    wav = sum(torch.sin(k * phase) / k for k in range(1, 6)) * 0.2
    return (wav + 0.01 * torch.randn(len(t), generator=generator)).float()


def tiny_spec(**overrides: object) -> dict:
    spec = {
        "name": "mel_rvq", "num_quantizers": 3, "codebook_size": 16, "first_codebook_size": 32,
        "kmeans_iterations": 3, "vocoder": {
            "name": "convnext_istft", "channels": 16, "layers": 1, "steps": 3, "batch_size": 2,
            "segment_frames": 8, "checkpoint_every": 2,
        },
    }
    spec.update(overrides)
    return spec


@pytest.fixture(scope="module")
def wavs() -> list[torch.Tensor]:
    return [sweep(0.6, 100 + 40 * i, 300 + 50 * i, seed=i) for i in range(6)]


@pytest.fixture(scope="module")
def fitted(wavs, tmp_path_factory):
    codec = build("codec", tiny_spec())
    codec.fit(wavs, tmp_path_factory.mktemp("work"))
    return codec


def test_encode_shape_rate_and_range(fitted, wavs):
    wav = wavs[0]
    codes = fitted.encode(wav)
    assert codes.dtype == torch.long
    assert codes.shape == (3, len(wav) // 256 + 1)
    assert abs(codes.shape[1] - len(wav) / SAMPLE_RATE * fitted.frame_rate) <= 1
    assert fitted.frame_rate == SAMPLE_RATE / 256
    assert fitted.codebook_size == 32
    assert 0 <= int(codes[0].max()) < 32 and 0 <= int(codes[1:].max()) < 16
    assert int(codes.min()) >= 0


def test_decode_length_and_fewer_levels(fitted, wavs):
    wav = wavs[1]
    codes = fitted.encode(wav)
    full = fitted.decode(codes)
    one_level = fitted.decode(codes[:1])
    assert full.dtype == torch.float32 and full.dim() == 1
    assert abs(len(full) - len(wav)) < 256
    assert one_level.shape == full.shape
    assert torch.isfinite(full).all()


def test_more_levels_reduce_feature_error(fitted, wavs):
    features = fitted.features(wavs[2])
    codes = fitted.encode(wavs[2])
    errors = [(fitted.dequantize(codes[:level]) - features).square().mean().item() for level in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]


def test_save_load_round_trip(fitted, wavs, tmp_path):
    fitted.save(tmp_path)
    assert (tmp_path / "codec.json").is_file() and (tmp_path / "vocoder" / "vocoder.pt").is_file()
    restored = build("codec", tiny_spec())
    restored.load(tmp_path)
    codes = fitted.encode(wavs[3])
    assert torch.equal(restored.encode(wavs[3]), codes)
    assert torch.allclose(restored.decode(codes), fitted.decode(codes), atol=1e-6)


def test_fit_is_deterministic(wavs, tmp_path):
    first = build("codec", tiny_spec())
    second = build("codec", tiny_spec())
    first.fit(wavs, tmp_path / "a")
    second.fit(wavs, tmp_path / "b")
    assert torch.equal(first.encode(wavs[4]), second.encode(wavs[4]))
    assert torch.allclose(first.decode(first.encode(wavs[4])), second.decode(second.encode(wavs[4])), atol=1e-6)


def test_griffin_lim_decoder_needs_no_vocoder_training(wavs):
    codec = build("codec", tiny_spec(vocoder={"name": "griffin_lim", "iterations": 4}))
    codec.fit(wavs[:3])
    assert codec.decode(codec.encode(wavs[0])).shape[0] == len(wavs[0]) // 256 * 256


def test_encode_before_fit_is_a_clear_error(wavs):
    codec = build("codec", tiny_spec())
    with pytest.raises(ConfigError, match="stage 3"):
        codec.encode(wavs[0])
    with pytest.raises(ConfigError, match="fit"):
        codec.load("/nonexistent/codec/dir")


def test_bad_inputs_are_clear_errors(fitted, wavs):
    with pytest.raises(AudioError, match="mono"):
        fitted.encode(torch.stack([wavs[0], wavs[0]]))
    with pytest.raises(AudioError, match="float"):
        fitted.encode((wavs[0] * 32767).to(torch.int16))
    codes = fitted.encode(wavs[0])
    with pytest.raises(ConfigError, match="levels"):
        fitted.decode(torch.cat([codes, codes]))
    with pytest.raises(ConfigError, match="outside"):
        fitted.decode(codes + 100)
    with pytest.raises(ConfigError, match="Unknown option"):
        build("codec", {"name": "mel_rvq", "num_quantiser": 4})


@pytest.mark.parametrize("bad, message", [({"kmeans_iterations": 0}, "kmeans_iterations"),
                                          ({"first_codebook_size": 1}, "first_codebook_size"),
                                          ({"hop_length": 0}, "hop_length 0 must be >= 1"),
                                          ({"f_max": 100000.0}, "Nyquist"), ({"f_min": 9000.0}, "f_min below f_max")])
def test_impossible_options_are_config_errors(bad: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build("codec", {"name": "mel_rvq", **bad})
