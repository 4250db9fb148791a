"""The ``encodec`` plugin on randomly initialised weights of the 24 kHz architecture (made here)."""
from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
import torch

from speechkit import registry
from speechkit.errors import ConfigError, MissingDependencyError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("encodec") is None or importlib.util.find_spec("einops") is None,
    reason="encodec not installed (optional extra): run tools/install_encodec.sh",
)


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state dict of the encodec_24khz architecture with random weights.

    A freshly built model's codebooks are all zero (its quantizer k-means-initialises them on
    its first forward pass, which costs seconds), so the test fills them with random vectors
    of the encoder's output scale and marks them initialised, as a trained checkpoint would be.
    """
    from speechkit.plugins.codec.encodec_codec import import_encodec_model

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = import_encodec_model().encodec_model_24khz(pretrained=False)
    with torch.no_grad():
        scale = float(model.encoder(_speech_like(0.5).view(1, 1, -1)).std())
    state = model.state_dict()
    for key in state:
        if key.endswith("_codebook.embed"):
            state[key] = scale * torch.randn_like(state[key])
            state[key.replace(".embed", ".embed_avg")] = state[key].clone()
        elif key.endswith("_codebook.inited"):
            state[key] = torch.ones_like(state[key])
    path = tmp_path_factory.mktemp("weights") / "random_encodec_24khz.th"
    torch.save(state, path)
    return path


def _speech_like(seconds: float) -> torch.Tensor:
    t = torch.arange(int(24000 * seconds)) / 24000
    return 0.3 * torch.sin(2 * torch.pi * 220 * t) * (1 + torch.sin(2 * torch.pi * 3 * t)) / 2


def test_encode_decode_from_a_checkpoint_path(random_checkpoint: Path) -> None:
    codec = registry.build("codec", {"name": "encodec", "checkpoint": str(random_checkpoint)})
    assert (codec.sample_rate, codec.frame_rate, codec.num_quantizers, codec.codebook_size) == (24000, 75.0, 8, 1024)
    wav = _speech_like(0.8)
    codes = codec.encode(wav)
    assert codes.dtype == torch.long and codes.shape == (8, 60)
    assert int(codes.min()) >= 0 and int(codes.max()) < 1024
    assert len(torch.unique(codes)) > 8  # real (k-means) codebooks, not all-zero ones
    audio = codec.decode(codes)
    assert audio.dtype == torch.float32 and audio.shape == (60 * 320,)
    assert codec.decode(codes[:2]).shape == (60 * 320,)  # coarse levels only
    assert "torchaudio" not in sys.modules or sys.modules["torchaudio"].__class__.__name__ != "_MissingTorchaudio"


def test_bandwidth_sets_levels_and_bad_options_are_refused(random_checkpoint: Path) -> None:
    codec = registry.build("codec", {"name": "encodec", "bandwidth": 1.5, "checkpoint": str(random_checkpoint)})
    assert codec.num_quantizers == 2 and codec.encode(_speech_like(0.4)).shape == (2, 30)
    with pytest.raises(ConfigError, match="bandwidth"):
        registry.build("codec", {"name": "encodec", "bandwidth": 5.0})
    with pytest.raises(ConfigError, match="encodec_24khz"):
        registry.build("codec", {"name": "encodec", "model": "encodec_96khz"})


def test_weights_from_the_torch_hub_cache(random_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    codec = registry.build("codec", {"name": "encodec"})
    expected = tmp_path / "hub" / "checkpoints" / "encodec_24khz-d7cc33bc.th"
    assert codec.checkpoint_path == expected
    with pytest.raises(MissingDependencyError) as error:
        codec.encode(_speech_like(0.2))
    assert str(expected) in str(error.value) and "codec.checkpoint=" in str(error.value)
    with pytest.raises(MissingDependencyError):
        codec.save(tmp_path / "exp")  # stage 3 fails before encoding anything
    expected.parent.mkdir(parents=True)
    expected.symlink_to(random_checkpoint)
    assert codec.encode(_speech_like(0.2)).shape == (8, 15)


def test_missing_configured_checkpoint_and_wrong_weights(tmp_path: Path) -> None:
    codec = registry.build("codec", {"name": "encodec", "checkpoint": str(tmp_path / "nope.th")})
    with pytest.raises(MissingDependencyError, match="nope.th"):
        codec.decode(torch.zeros(8, 3, dtype=torch.long))
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.th")
    codec = registry.build("codec", {"name": "encodec", "checkpoint": str(tmp_path / "other.th")})
    with pytest.raises(Exception, match="not a encodec_24khz state dict"):
        codec.encode(_speech_like(0.2))


def test_passes_the_codec_contract(random_checkpoint: Path) -> None:
    from speechkit.testing import check_codec

    check_codec(registry.build("codec", {"name": "encodec", "checkpoint": str(random_checkpoint)}))
