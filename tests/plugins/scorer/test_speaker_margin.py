"""speaker_margin on espeak-ng voices: an output of voice A is closer to A's other speech than to B's."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from speechkit import registry
from speechkit.errors import DataError
from speechkit.interfaces.scorer import ScoreItem
from speechkit.testing import check_scorer

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or importlib.util.find_spec("resemblyzer") is None,
    reason="needs espeak-ng and resemblyzer (the eval extra)",
)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("voices")
    specs = {
        "a_out": ("en-us", "40", "Please bring the blue book to the kitchen table."),
        "a_real": ("en-us", "40", "She sells sea shells by the sea shore every single morning."),
        "b_real": ("en-us+f4", "85", "She sells sea shells by the sea shore every single morning."),
    }
    paths = {}
    for name, (voice, pitch, text) in specs.items():
        paths[name] = folder / f"{name}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-p", pitch, "-w", str(paths[name]), text], check=True)
    return paths


def test_margin_is_same_minus_other(clips: dict[str, Path]) -> None:
    scorer = registry.build("scorer", {"name": "speaker_margin"})
    item = ScoreItem("x", clips["a_out"], "en", reference_wavs=[clips["a_real"]],
                     same_speaker_wavs=[clips["a_real"]], other_speaker_wavs=[clips["b_real"]])
    (score,) = scorer.score([item])
    assert score["sim_prompt"] == pytest.approx(score["sim_same"])
    assert score["sim_margin"] == pytest.approx(score["sim_same"] - score["sim_other"])
    assert score["sim_margin"] > 0.05, score
    check_scorer(scorer, [item])


def test_metrics_without_wavs_are_left_out(clips: dict[str, Path]) -> None:
    scorer = registry.build("scorer", {"name": "speaker_margin"})
    (score,) = scorer.score([ScoreItem("p", clips["a_out"], reference_wavs=[clips["b_real"]])])
    assert set(score) == {"sim_prompt"}
    with pytest.raises(DataError, match="neither a prompt"):
        scorer.score([ScoreItem("none", clips["a_out"], other_speaker_wavs=[clips["b_real"]])])
