"""``dnsmos``: non-intrusive naturalness / quality estimates (DNSMOS P.835 and P.808) per item.

Uses the ``speechmos`` package, which ships Microsoft's DNSMOS ONNX models and runs them with
onnxruntime on the CPU (offline). Audio is resampled to 16 kHz; clips shorter than the model's
9 s window are looped by speechmos. Scores are on the MOS scale 1-5: ``dnsmos_ovrl`` (overall),
``dnsmos_sig`` (speech signal), ``dnsmos_bak`` (background), ``dnsmos_p808``. They judge how
clean and natural audio sounds, not whose voice it is or whether it says the right words.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from speechkit.errors import MissingDependencyError
from speechkit.interfaces.scorer import ScoreItem, Scorer
from speechkit.registry import SCORER

DNSMOS_RATE = 16000
#: speechmos result key -> our metric name.
_KEYS = {"ovrl_mos": "dnsmos_ovrl", "sig_mos": "dnsmos_sig", "bak_mos": "dnsmos_bak", "p808_mos": "dnsmos_p808"}


def _speechmos_dnsmos() -> Any:
    try:
        from speechmos import dnsmos
    except ImportError as error:
        raise MissingDependencyError(
            "dnsmos needs the speechmos package (it ships the DNSMOS ONNX models): "
            "pip install 'speechkit[eval]' -c tools/constraints.txt"
        ) from error
    return dnsmos


@SCORER.register("dnsmos")
class DnsMos(Scorer):
    """Per item: ``dnsmos_ovrl``, ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_p808`` (MOS 1-5)."""

    @dataclasses.dataclass
    class Config:
        """Options.

        Attributes:
            personalized: use the personalized DNSMOS model (penalises interfering talkers).
        """

        personalized: bool = False

    metrics = tuple(_KEYS.values())
    label = "DNSMOS"

    def __init__(self, config: "DnsMos.Config | None" = None, **context: Any) -> None:
        super().__init__(config)
        self._dnsmos = _speechmos_dnsmos()  # fail at build time, before any work is done

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        """DNSMOS of each item's ``wav``."""
        from speechkit.audio.io import load_audio

        model_type = "dnsmos_personalized" if self.config.personalized else "dnsmos"
        scores = []
        for item in items:
            wav, _ = load_audio(item.wav, DNSMOS_RATE, max_seconds=None, allow_silence=True)
            wav = np.clip(wav, -1.0, 1.0).astype(np.float32)
            result = self._dnsmos.run(wav, DNSMOS_RATE, model_type=model_type)
            scores.append({ours: float(result[theirs]) for theirs, ours in _KEYS.items()})
        return scores
