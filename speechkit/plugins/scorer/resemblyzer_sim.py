"""``resemblyzer_sim``: speaker similarity, cosine of Resemblyzer (GE2E) speaker embeddings.

Each item's ``wav`` is compared with each of its ``reference_wavs`` (e.g. the prompt or the
original recording) and the cosines are averaged. The encoder weights ship inside the
``resemblyzer`` package, so this works offline. Same espeak speaker ~0.89, different ~0.70.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from speechkit.errors import DataError, MissingDependencyError
from speechkit.interfaces.scorer import ScoreItem, Scorer
from speechkit.registry import SCORER
from speechkit.utils.threads import one_torch_thread

RESEMBLYZER_RATE = 16000


@SCORER.register("resemblyzer_sim")
class ResemblyzerSimilarity(Scorer):
    """Per item: ``speaker_sim`` = mean cosine similarity to its reference wavs (-1..1)."""

    @dataclasses.dataclass
    class Config:
        """Options.

        Attributes:
            trim_silence: drop non-speech with Resemblyzer's VAD before embedding.
        """

        trim_silence: bool = True

    metrics = ("speaker_sim",)

    def __init__(self, config: "ResemblyzerSimilarity.Config | None" = None, **context: Any) -> None:
        super().__init__(config)
        self._encoder: Any = None
        self._cache: dict[str, np.ndarray] = {}

    @property
    def encoder(self) -> Any:
        """The ``resemblyzer.VoiceEncoder`` on the CPU (loaded on first use)."""
        if self._encoder is None:
            try:
                from resemblyzer import VoiceEncoder
            except ImportError as error:
                raise MissingDependencyError(
                    "resemblyzer_sim needs resemblyzer and webrtcvad: "
                    "pip install 'speechkit[eval]' -c tools/constraints.txt"
                ) from error
            self._encoder = VoiceEncoder("cpu", verbose=False)
        return self._encoder

    def embed(self, path: str | Path) -> np.ndarray:
        """Unit-norm speaker embedding float32[256] of the audio file ``path`` (cached by path)."""
        key = str(path)
        if key not in self._cache:
            from resemblyzer import preprocess_wav

            from speechkit.audio.io import load_audio

            wav, _ = load_audio(path, RESEMBLYZER_RATE, max_seconds=None, allow_silence=True)
            if self.config.trim_silence:
                trimmed = preprocess_wav(wav, source_sr=RESEMBLYZER_RATE)
                wav = trimmed if len(trimmed) >= RESEMBLYZER_RATE // 10 else wav  # keep near-silent audio scoreable
            self._cache[key] = self.encoder.embed_utterance(wav.astype(np.float32))
        return self._cache[key]

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        """Mean cosine between each item's wav and its reference wavs (one torch thread)."""
        with one_torch_thread():
            scores = []
            for item in items:
                if not item.reference_wavs:
                    raise DataError(f"resemblyzer_sim: item {item.utt_id!r} has no reference_wavs to compare with.")
                embedding = self.embed(item.wav)
                cosines = [float(np.dot(embedding, self.embed(ref))) for ref in item.reference_wavs]
                scores.append({"speaker_sim": float(np.mean(cosines))})
            return scores
