"""Scorer: an objective metric over synthesized (or resynthesized) utterances."""
from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Sequence

from speechkit.interfaces.base import Component


@dataclasses.dataclass
class ScoreItem:
    """One hypothesis to score, with what a metric may compare it to.

    Attributes:
        utt_id: identifier of the hypothesis.
        wav: path of the hypothesis audio.
        lang: language of its content (``"en"``, ``"zh"``).
        text: reference text (for WER/CER/BLEU), if any.
        reference_wavs: paths it should sound like (for speaker similarity), e.g. the prompt.
        same_speaker_wavs: real recordings of the same speaker in the item's language (for the
            speaker margin: similarity to these vs to ``other_speaker_wavs``), if any.
        other_speaker_wavs: real recordings of other speakers in the item's language, if any.
    """

    utt_id: str
    wav: Path
    lang: str = ""
    text: str = ""
    reference_wavs: Sequence[Path] = ()
    same_speaker_wavs: Sequence[Path] = ()
    other_speaker_wavs: Sequence[Path] = ()


class Scorer(Component):
    """Scores items. ``metrics`` names the keys ``score`` returns per item; ``summarize`` turns
    per-item values into corpus figures (e.g. WER pooled over words, not averaged)."""

    @property
    @abc.abstractmethod
    def metrics(self) -> Sequence[str]: ...

    @abc.abstractmethod
    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        """One dict ``{metric: value}`` per item, in order."""

    def summarize(self, items: Sequence[ScoreItem], scores: Sequence[dict[str, float]]) -> dict[str, float]:
        """Corpus-level figures; default: the mean of each metric over items."""
        summary: dict[str, float] = {}
        for metric in self.metrics:
            values = [s[metric] for s in scores if metric in s]
            if values:
                summary[metric] = float(sum(values) / len(values))
        return summary
