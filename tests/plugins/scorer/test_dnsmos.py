"""dnsmos with the DNSMOS ONNX models shipped in speechmos: speech scores above white noise."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit import registry
from speechkit.interfaces.scorer import ScoreItem
from speechkit.testing import check_scorer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("speechmos") is None or shutil.which("espeak-ng") is None,
    reason="needs speechmos (eval extra) and espeak-ng",
)


def test_speech_sounds_better_than_noise(tmp_path: Path) -> None:
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "A short sentence for the quality model."], check=True)
    noise = tmp_path / "noise.wav"
    sf.write(noise, np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32), 16000)
    scorer = registry.build("scorer", {"name": "dnsmos"})
    items = [ScoreItem("speech", speech), ScoreItem("noise", noise)]
    speech_score, noise_score = scorer.score(items)
    assert set(speech_score) == {"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"}
    assert all(0.0 < value < 5.5 for value in speech_score.values())
    assert speech_score["dnsmos_ovrl"] > noise_score["dnsmos_ovrl"]
    assert speech_score["dnsmos_bak"] > noise_score["dnsmos_bak"]
    check_scorer(scorer, items[:1])
