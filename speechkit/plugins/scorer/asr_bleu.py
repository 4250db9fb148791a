"""``asr_bleu``: BLEU (sacrebleu) of a speech-to-speech translation's transcript vs the reference.

English output is transcribed by Whisper (the ``whisper_wer`` scorer's model) and both sides are
normalised alike (:func:`normalize_english`: lowercase, numbers spelled out, no punctuation), then
scored with sacrebleu on whitespace tokens. Chinese output has no offline ASR, so it is recognised
as phones by the recipe's own ST model (CTC, as in ``ctc_cer``) and BLEU is computed over phone
tokens (tones kept, boundaries dropped) against the reference text's phones: a *phone-BLEU*,
comparable between rows of one run only.

Per item the scorer returns the sentence BLEU and sacrebleu's sufficient statistics
(matching / total n-grams for n = 1..4, hypothesis and reference lengths), so a corpus BLEU (and
a bootstrap interval over items) is computed from sums: :func:`corpus_bleu_from_stats`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from speechkit.errors import DataError, MissingDependencyError
from speechkit.interfaces.frontend import Frontend
from speechkit.interfaces.scorer import ScoreItem, Scorer
from speechkit.interfaces.st import STFrontend
from speechkit.plugins.scorer.phone_recognition import PhoneRecognizer, PhoneScorerMixin, phone_tokens, reference_phones
from speechkit.plugins.scorer.text_norm import normalize_english
from speechkit.registry import SCORER

MAX_ORDER = 4
#: Per-item keys holding sacrebleu's sufficient statistics.
STAT_KEYS = (
    *(f"bleu_correct_{n}" for n in range(1, MAX_ORDER + 1)),
    *(f"bleu_total_{n}" for n in range(1, MAX_ORDER + 1)),
    "bleu_sys_len",
    "bleu_ref_len",
)


def _bleu_class() -> Any:
    try:
        from sacrebleu.metrics import BLEU
    except ImportError as error:
        raise MissingDependencyError("asr_bleu needs sacrebleu: pip install 'speechkit[eval]' -c tools/constraints.txt") from error
    return BLEU


def sentence_bleu_stats(hypothesis: str, reference: str) -> dict[str, float]:
    """Sentence BLEU (0-100, exp smoothing) of whitespace-tokenised strings, with its statistics."""
    bleu = _bleu_class()(tokenize="none", effective_order=True)
    result = bleu.sentence_score(hypothesis, [reference])
    stats = {"asr_bleu": float(result.score)}
    for n in range(MAX_ORDER):
        stats[f"bleu_correct_{n + 1}"] = float(result.counts[n])
        stats[f"bleu_total_{n + 1}"] = float(result.totals[n])
    stats["bleu_sys_len"] = float(result.sys_len)
    stats["bleu_ref_len"] = float(result.ref_len)
    return stats


def corpus_bleu_from_stats(scores: Sequence[Mapping[str, float]]) -> float:
    """Corpus BLEU (0-100) from per-item statistics summed over ``scores`` (as sacrebleu's corpus_score)."""
    if not scores:
        raise DataError("corpus BLEU of no items is undefined.")
    correct = [int(sum(s[f"bleu_correct_{n}"] for s in scores)) for n in range(1, MAX_ORDER + 1)]
    total = [int(sum(s[f"bleu_total_{n}"] for s in scores)) for n in range(1, MAX_ORDER + 1)]
    sys_len = int(sum(s["bleu_sys_len"] for s in scores))
    ref_len = int(sum(s["bleu_ref_len"] for s in scores))
    return float(_bleu_class().compute_bleu(correct, total, sys_len, ref_len, smooth_method="exp").score)


@SCORER.register("asr_bleu")
class AsrBleu(PhoneScorerMixin, Scorer):
    """Per item: ``asr_bleu`` (sentence BLEU) and the statistics in :data:`STAT_KEYS`.

    Context: ``frontend`` (for Chinese reference phones), optional ``whisper`` (a built
    ``whisper_wer`` scorer whose transcripts of the same items are reused when it scored them
    just before), optional ``st_frontend`` (instead of loading ``pack``) or ``phone_recognizer``
    (a :class:`PhoneRecognizer` shared with other scorers).
    """

    @dataclasses.dataclass
    class Config:
        """Options.

        Attributes:
            whisper: options of the ``whisper_wer`` scorer transcribing English (model_path, beam_size, ...).
            pack: model pack with the ``st_frontend`` recognising Chinese phones.
            frontend: text frontend spec used when none is passed as context.
        """

        whisper: dict = dataclasses.field(default_factory=dict)
        pack: str = "exp/st/pack"
        frontend: dict = dataclasses.field(default_factory=dict)

    metrics = ("asr_bleu",)  # the statistics ride along in each item's dict
    label = "ASR-BLEU"

    def __init__(
        self,
        config: "AsrBleu.Config | None" = None,
        *,
        frontend: Frontend | dict | None = None,
        whisper: Scorer | None = None,
        st_frontend: STFrontend | None = None,
        phone_recognizer: PhoneRecognizer | None = None,
        **context: Any,
    ) -> None:
        super().__init__(config)
        self._whisper = whisper
        self._setup_phone_scoring("asr_bleu", frontend, st_frontend, phone_recognizer)
        #: ``{utt_id: hypothesis as scored}`` of the last ``score`` call.
        self.hypotheses: dict[str, str] = {}

    @property
    def whisper(self) -> Any:
        """The ``whisper_wer`` scorer used to transcribe English (built on first use)."""
        if self._whisper is None:
            from speechkit.registry import build

            self._whisper = build("scorer", {"name": "whisper_wer", **self.config.whisper})
        return self._whisper

    def _english_transcript(self, item: ScoreItem) -> str:
        known = getattr(self._whisper, "hypotheses", {}) if self._whisper is not None else {}
        if item.utt_id in known:
            return known[item.utt_id]
        from speechkit.audio.io import load_audio
        from speechkit.plugins.scorer.whisper_wer import WHISPER_RATE

        wav, _ = load_audio(item.wav, WHISPER_RATE, max_seconds=None, allow_silence=True)
        return self.whisper.transcribe(wav)

    def hypothesis_and_reference(self, item: ScoreItem) -> tuple[str, str]:
        """(hypothesis, reference) token strings compared for ``item`` (English words or phones)."""
        if not item.text.strip():
            raise DataError(f"asr_bleu: item {item.utt_id!r} has no reference translation (text).")
        if item.lang == "en":
            return normalize_english(self._english_transcript(item)), normalize_english(item.text)
        if item.lang == "zh":
            hypothesis = phone_tokens(self.recognizer.recognize(item.wav))
            reference = phone_tokens(reference_phones(self.frontend, item.text, item.lang, item.utt_id, "asr_bleu"))
            return " ".join(hypothesis), " ".join(reference)
        raise DataError(f"asr_bleu: item {item.utt_id!r} has language {item.lang!r}; only 'en' and 'zh' are scored.")

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        """Sentence BLEU and statistics per item."""
        scores = []
        self.hypotheses = {}
        for item in items:
            hypothesis, reference = self.hypothesis_and_reference(item)
            self.hypotheses[item.utt_id] = hypothesis
            scores.append(sentence_bleu_stats(hypothesis, reference))
        return scores

    def summarize(self, items: Sequence[ScoreItem], scores: Sequence[dict[str, float]]) -> dict[str, float]:
        """Corpus BLEU over all items (not a mean of sentence BLEUs)."""
        return {"asr_bleu": corpus_bleu_from_stats(scores)}
