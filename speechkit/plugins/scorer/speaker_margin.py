"""``speaker_margin``: does the output sound like the prompt speaker, more than like anyone else?

Three Resemblyzer cosine similarities per item (embeddings cached per wav path, see
``resemblyzer_sim``):

* ``sim_prompt``: output vs the prompt (``ScoreItem.reference_wavs``);
* ``sim_same``: output vs the same speaker's real speech in the output's language
  (``ScoreItem.same_speaker_wavs``) -- for cross-lingual TTS, the voice the model should produce;
* ``sim_other``: output vs other test speakers' real speech in that language
  (``ScoreItem.other_speaker_wavs``);
* ``sim_margin`` = ``sim_same - sim_other``: above zero, the output is closer to its own speaker
  than to the others. Raw similarities of synthetic voices sit high (~0.7 between different espeak
  voices), so the margin is the figure that shows speaker identity survived.

Each metric is left out of an item whose wavs for it are missing (e.g. no prompt for ground truth).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from speechkit.errors import DataError
from speechkit.interfaces.scorer import ScoreItem, Scorer
from speechkit.plugins.scorer.resemblyzer_sim import ResemblyzerSimilarity
from speechkit.registry import SCORER
from speechkit.utils.threads import one_torch_thread


@SCORER.register("speaker_margin")
class SpeakerMargin(Scorer):
    """Per item: ``sim_prompt``, ``sim_same``, ``sim_other``, ``sim_margin`` (cosines, -1..1)."""

    @dataclasses.dataclass
    class Config:
        """Options.

        Attributes:
            trim_silence: drop non-speech with Resemblyzer's VAD before embedding.
        """

        trim_silence: bool = True

    metrics = ("sim_prompt", "sim_same", "sim_other", "sim_margin")

    def __init__(self, config: "SpeakerMargin.Config | None" = None, **context: Any) -> None:
        super().__init__(config)
        self.similarity = ResemblyzerSimilarity(ResemblyzerSimilarity.Config(trim_silence=self.config.trim_silence))

    def mean_cosine(self, wav: Path, others: Sequence[Path]) -> float:
        """Mean cosine similarity between the embedding of ``wav`` and those of ``others``."""
        embedding = self.similarity.embed(wav)
        return float(np.mean([np.dot(embedding, self.similarity.embed(other)) for other in others]))

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        """The similarities of each item that its wavs allow (one torch thread)."""
        with one_torch_thread():
            scores = []
            for item in items:
                if not (item.reference_wavs or item.same_speaker_wavs):
                    raise DataError(
                        f"speaker_margin: item {item.utt_id!r} has neither a prompt (reference_wavs) nor "
                        "same-speaker recordings (same_speaker_wavs) to compare with."
                    )
                result: dict[str, float] = {}
                if item.reference_wavs:
                    result["sim_prompt"] = self.mean_cosine(item.wav, item.reference_wavs)
                if item.same_speaker_wavs:
                    result["sim_same"] = self.mean_cosine(item.wav, item.same_speaker_wavs)
                if item.other_speaker_wavs:
                    result["sim_other"] = self.mean_cosine(item.wav, item.other_speaker_wavs)
                if "sim_same" in result and "sim_other" in result:
                    result["sim_margin"] = result["sim_same"] - result["sim_other"]
                scores.append(result)
            return scores
