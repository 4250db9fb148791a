"""Stage 3 (dump_codes) on a tiny data dir of sine waves with a tiny trainable test codec."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.bin import dump_codes
from speechkit.codec_io import load_codec
from speechkit.data import tokens
from speechkit.interfaces import Codec
from speechkit.registry import CODEC


@CODEC.register("test_frame_energy")
class FrameEnergyCodec(Codec):
    """Level 1: frame log-energy bucket; level 2: zero-crossing-rate bucket; buckets fitted as quantiles."""

    trainable = True

    @dataclasses.dataclass
    class Config:
        sample_rate: int = 8000
        hop_length: int = 160
        codebook_size: int = 8

    def __init__(self, config: "FrameEnergyCodec.Config | None" = None, **context: object) -> None:
        super().__init__(config)
        self.edges: torch.Tensor | None = None  # [2, K - 1] bucket edges per level

    sample_rate = property(lambda self: self.config.sample_rate)
    frame_rate = property(lambda self: self.config.sample_rate / self.config.hop_length)
    num_quantizers = property(lambda self: 2)
    codebook_size = property(lambda self: self.config.codebook_size)

    def _features(self, wav: torch.Tensor) -> torch.Tensor:
        """wav: FloatTensor[S] -> FloatTensor[2, T] (log energy, zero-crossing rate)."""
        frames = wav[: len(wav) // self.config.hop_length * self.config.hop_length].view(-1, self.config.hop_length)
        energy = torch.log(frames.pow(2).mean(1) + 1e-8)
        zcr = (frames[:, 1:].sign() != frames[:, :-1].sign()).float().mean(1)
        return torch.stack([energy, zcr])

    def fit(self, wavs, work_dir=None) -> None:
        features = torch.cat([self._features(w) for w in wavs], dim=1)
        quantiles = torch.linspace(0, 1, self.codebook_size + 1)[1:-1]
        self.edges = torch.quantile(features, quantiles, dim=1).T.contiguous()

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        features = self._features(wav)
        return torch.stack([torch.bucketize(features[i], self.edges[i]) for i in range(2)]).long()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        amplitude = (codes[0].float() + 1) / self.codebook_size
        return (amplitude.repeat_interleave(self.config.hop_length) * 0.1).float()

    def save(self, directory) -> None:
        torch.save({"edges": self.edges}, Path(directory) / "edges.pt")

    def load(self, directory) -> None:
        self.edges = torch.load(Path(directory) / "edges.pt", weights_only=True)["edges"]


def _make_data(root: Path, set_name: str, count: int, bad: dict[int, str] | None = None) -> None:
    set_dir = root / "data" / set_name
    (root / "wav").mkdir(exist_ok=True)
    set_dir.mkdir(parents=True)
    rows = []
    for i in range(count):
        utt = f"spk{i % 2}-{set_name}{i:02d}"
        path = root / "wav" / f"{utt}.wav"
        rate = 16000 if i % 3 == 0 else 8000  # some files need resampling
        t = np.arange(int(rate * (0.5 + 0.1 * i))) / rate
        wav = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) * np.linspace(0.2, 1, len(t))
        kind = (bad or {}).get(i)
        if kind == "silent":
            wav = np.zeros_like(wav)
        sf.write(path, wav.astype(np.float32), rate)
        if kind == "corrupt":
            path.write_bytes(b"RIFF not really a wav")
        rows.append((utt, f"spk{i % 2}", str(path)))
    rows.sort()
    (set_dir / "wav.scp").write_text("".join(f"{u} {p}\n" for u, _, p in rows))
    (set_dir / "text").write_text("".join(f"{u} hello\n" for u, _, _ in rows))
    (set_dir / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s, _ in rows))
    (set_dir / "utt2lang").write_text("".join(f"{u} en\n" for u, _, _ in rows))
    spk2utt = {}
    for u, s, _ in rows:
        spk2utt.setdefault(s, []).append(u)
    (set_dir / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items())))


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    _make_data(tmp_path, "train", 6)
    _make_data(tmp_path, "dev", 5)
    (tmp_path / "conf.yaml").write_text("codec: {name: test_frame_energy, codebook_size: 8}\n")
    return tmp_path


def _run(root: Path, *extra: str) -> int:
    argv = ["--config", str(root / "conf.yaml"), "--data", str(root / "data"), "--dump", str(root / "dump"),
            "--exp", str(root / "exp"), "--sets", "train", "dev", *extra]
    return dump_codes.main(argv)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "dump").rglob("*"))
            if p.is_file() and not p.name.startswith(".done")}


def test_stage_fits_dumps_and_is_idempotent(recipe: Path) -> None:
    assert _run(recipe, "--nj", "2") == 0
    codec = load_codec(recipe / "exp" / "codec")
    assert isinstance(codec, FrameEnergyCodec) and codec.edges is not None
    info = json.loads((recipe / "dump" / "codec_info.json").read_text())
    assert info == {"name": "test_frame_energy", "sample_rate": 8000, "frame_rate": 50.0,
                    "num_quantizers": 2, "codebook_size": 8, "trainable": True}
    reader = tokens.load_codes(recipe / "dump" / "dev" / "codes.scp")
    frames = tokens.read_utt2num_frames(recipe / "dump" / "dev" / "utt2num_frames")
    assert len(reader) == 5 and set(frames) == set(reader)
    for utt, codes in reader.items():
        assert codes.shape == (2, frames[utt]) and int(codes.max()) < 8
    assert frames["spk0-dev00"] == 25  # 0.5 s at 50 Hz (file at 16 kHz, resampled to 8 kHz)
    assert (recipe / "dump" / "train" / "codes.1.ark").is_file()
    assert (recipe / "exp" / "codec" / "config.yaml").is_file()
    before = _snapshot(recipe)
    mtimes = {p: p.stat().st_mtime_ns for p in (recipe / "dump").rglob("*.ark")}
    assert _run(recipe, "--nj", "2") == 0  # second run: nothing redone
    assert _snapshot(recipe) == before
    assert mtimes == {p: p.stat().st_mtime_ns for p in (recipe / "dump").rglob("*.ark")}


def test_killed_shard_is_redone_identically(recipe: Path) -> None:
    assert _run(recipe, "--nj", "2") == 0
    before = _snapshot(recipe)
    dev = recipe / "dump" / "dev"
    untouched = (dev / "codes.0.ark").stat().st_mtime_ns
    for path in (dev / ".done.codes.1", dev / ".done.codes", dev / "codes.1.ark"):
        path.unlink()
    (dev / ".codes.1.ark.x.tmp").write_bytes(b"half-written")  # what a killed writer leaves
    assert _run(recipe, "--nj", "2") == 0
    assert _snapshot(recipe) == before
    assert (dev / "codes.0.ark").stat().st_mtime_ns == untouched


def test_changing_nj_rewrites_and_drops_stale_shards(recipe: Path) -> None:
    assert _run(recipe, "--nj", "3") == 0
    reference = dict(tokens.load_codes(recipe / "dump" / "dev" / "codes.scp").items())
    assert _run(recipe) == 0
    dev = recipe / "dump" / "dev"
    assert not (dev / "codes.1.ark").exists() and not (dev / "codes.2.scp").exists()
    reread = tokens.load_codes(dev / "codes.scp")
    assert all(torch.equal(reread[u], c) for u, c in reference.items())


def test_bad_audio_is_listed_or_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _make_data(tmp_path, "train", 4)
    _make_data(tmp_path, "dev", 6, bad={1: "silent", 4: "corrupt"})
    (tmp_path / "conf.yaml").write_text("codec: {name: test_frame_energy}\n")
    assert dump_codes.run_main(dump_codes.main, [
        "--config", str(tmp_path / "conf.yaml"), "--data", str(tmp_path / "data"),
        "--dump", str(tmp_path / "dump"), "--exp", str(tmp_path / "exp"), "--sets", "train", "dev", "--nj", "2",
    ]) == 2
    message = caplog.text
    assert "2 utterance(s) have bad audio" in message
    assert "spk1-dev01" in message and "silent" in message
    assert "spk0-dev04" in message and "Cannot read" in message
    assert not (tmp_path / "dump" / "dev" / "codes.scp").exists()
    assert _run(tmp_path, "--nj", "2", "--override", "tokens.skip_bad_audio=true") == 0
    assert len(tokens.load_codes(tmp_path / "dump" / "dev" / "codes.scp")) == 4
    bad = (tmp_path / "dump" / "dev" / "bad_utts").read_text().splitlines()
    assert [line.split()[0] for line in bad] == ["spk0-dev04", "spk1-dev01"]


def test_fit_cap_and_bad_options(recipe: Path) -> None:
    with pytest.raises(Exception, match="fit_max_utt"):
        _run(recipe, "--override", "tokens.fit_max_utt=2")
    assert _run(recipe, "--override", "tokens.fit_max_utts=2") == 0
    marker = json.loads((recipe / "exp" / "codec" / ".done.codec").read_text())
    assert marker["fit_utts"] == 2


def test_stage3_runs_with_a_third_party_codec_plugin(tmp_path: Path, fake_plugin: Path) -> None:
    """The installed fake plugin's `band_energy` codec, named only in YAML, drives stage 3."""
    _make_data(tmp_path, "train", 4)
    _make_data(tmp_path, "dev", 3)
    (tmp_path / "conf.yaml").write_text("codec: {name: band_energy, num_bands: 3, levels: 16}\n")
    assert _run(tmp_path, "--nj", "2") == 0
    info = json.loads((tmp_path / "dump" / "codec_info.json").read_text())
    assert info["name"] == "band_energy" and info["num_quantizers"] == 3 and info["codebook_size"] == 16
    reader = tokens.load_codes(tmp_path / "dump" / "dev" / "codes.scp")
    assert len(reader) == 3
    for codes in reader.values():
        assert codes.shape[0] == 3 and int(codes.max()) < 16
    assert type(load_codec(tmp_path / "exp" / "codec")).__module__ == "speechkit_fake_plugin.codec"
