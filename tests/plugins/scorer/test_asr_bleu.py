"""asr_bleu: sentence statistics add up to sacrebleu's corpus BLEU; English reuses Whisper
transcripts, Chinese is phone-BLEU over an ST model's recognised phones."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sacrebleu
import soundfile as sf

from speechkit import registry
from speechkit.errors import DataError
from speechkit.interfaces.frontend import Phone, PhoneSequence
from speechkit.interfaces.scorer import ScoreItem
from speechkit.interfaces.st import STFrontend
from speechkit.plugins.scorer.asr_bleu import corpus_bleu_from_stats, sentence_bleu_stats
from speechkit.testing import check_scorer

HYPOTHESES = ["the cat sat on the mat", "there is a dog in the garden today", "hello world"]
REFERENCES = ["the cat sat on a mat", "a dog is in the garden today", "goodbye world"]


class EchoST(STFrontend):
    """Recognises the phones given at construction (not registered: passed as context)."""

    @dataclasses.dataclass
    class Config:
        pass

    def __init__(self, phones: list[str]) -> None:
        super().__init__()
        self.phones = phones

    def recognize(self, wav: Any, sample_rate: int) -> PhoneSequence:
        return [Phone.from_token(token) for token in self.phones]

    def translate(self, wav: Any, sample_rate: int, target_lang: str) -> PhoneSequence:
        return self.recognize(wav, sample_rate)


class KnownTranscripts:
    """Stands in for a whisper_wer scorer that has just transcribed the items."""

    def __init__(self, hypotheses: dict[str, str]) -> None:
        self.hypotheses = hypotheses

    def transcribe(self, wav: Any) -> str:
        raise AssertionError("transcripts of the same items must be reused, not recomputed")


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000), 16000)
    return path


def test_summed_sentence_statistics_equal_sacrebleu_corpus_bleu() -> None:
    stats = [sentence_bleu_stats(h, r) for h, r in zip(HYPOTHESES, REFERENCES)]
    expected = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES], tokenize="none").score
    assert corpus_bleu_from_stats(stats) == pytest.approx(expected)
    assert sentence_bleu_stats("a b c d", "a b c d")["asr_bleu"] == pytest.approx(100.0)
    assert sentence_bleu_stats("w x y z", "a b c d")["asr_bleu"] < 10.0
    with pytest.raises(DataError):
        corpus_bleu_from_stats([])


def test_english_uses_normalised_whisper_transcripts(tone: Path) -> None:
    whisper = KnownTranscripts({"a": "The cat sat on the mat!", "b": "I have 15 apples."})
    scorer = registry.build("scorer", {"name": "asr_bleu"}, whisper=whisper)
    items = [ScoreItem("a", tone, "en", "the cat sat on the mat"), ScoreItem("b", tone, "en", "I have fifteen apples")]
    first, second = scorer.score(items)
    assert first["asr_bleu"] == pytest.approx(100.0) and second["asr_bleu"] == pytest.approx(100.0)
    assert scorer.hypotheses["b"] == "i have fifteen apples"
    assert scorer.summarize(items, [first, second]) == {"asr_bleu": pytest.approx(100.0)}
    check_scorer(scorer, items)


def test_chinese_is_bleu_over_recognised_phones(tone: Path) -> None:
    recognised = ["zh:n", "zh:i2", "zh:h", "zh:ao3", "<sp>", "zh:sh", "zh:iii4", "zh:j", "zh:ie4"]
    scorer = registry.build("scorer", {"name": "asr_bleu"}, frontend={"name": "pypinyin"}, st_frontend=EchoST(recognised))
    (exact,) = scorer.score([ScoreItem("a", tone, "zh", "你好，世界。")])
    assert exact["asr_bleu"] == pytest.approx(100.0)
    assert scorer.hypotheses["a"] == "zh:n zh:i2 zh:h zh:ao3 zh:sh zh:iii4 zh:j zh:ie4"
    (partial,) = scorer.score([ScoreItem("b", tone, "zh", "你好")])
    assert 0.0 < partial["asr_bleu"] < 100.0 and partial["bleu_ref_len"] == 4.0


def test_rejects_items_it_cannot_score(tone: Path) -> None:
    scorer = registry.build("scorer", {"name": "asr_bleu"}, whisper=KnownTranscripts({}))
    with pytest.raises(DataError, match="reference translation"):
        scorer.score([ScoreItem("a", tone, "en", "")])
    with pytest.raises(DataError, match="only 'en' and 'zh'"):
        scorer.score([ScoreItem("a", tone, "fr", "bonjour")])
