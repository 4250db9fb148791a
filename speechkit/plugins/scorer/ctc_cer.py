"""``ctc_cer``: phone error rate (PER) of each item by the recipe's own ST model's CTC recogniser.

There is no offline Mandarin ASR (NOTES-ENV), so Chinese intelligibility is measured with the
``transformer_st`` model trained in stage 6: its CTC head recognises the phones of the audio, and
they are compared (edit distance via jiwer) with the phones the text frontend gives for the
reference text. It is therefore a *phone* error rate of a recogniser trained on this corpus
only, and the results table labels it "PER (own ST CTC)": it is comparable between rows of one
run (hypotheses vs the ground-truth audio), not with published CERs.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from speechkit.interfaces.frontend import Frontend
from speechkit.interfaces.scorer import ScoreItem, Scorer
from speechkit.interfaces.st import STFrontend
from speechkit.plugins.scorer.phone_recognition import PhoneRecognizer, PhoneScorerMixin, phone_tokens, reference_phones
from speechkit.plugins.scorer.whisper_wer import word_errors
from speechkit.registry import SCORER


@SCORER.register("ctc_cer")
class CtcPhoneErrorRate(PhoneScorerMixin, Scorer):
    """Per item: ``per`` (phone errors / reference phones), ``phone_errors``, ``ref_phones``.

    Context: ``frontend`` (a :class:`Frontend` or its spec, to phonemize the reference text),
    optional ``st_frontend`` (an already built :class:`STFrontend`; otherwise ``pack`` is loaded),
    optional ``phone_recognizer`` (a :class:`PhoneRecognizer` shared with other scorers).
    """

    @dataclasses.dataclass
    class Config:
        """Options.

        Attributes:
            pack: model pack with the ``st_frontend`` component (recipe stage 6 writes exp/st/pack).
            keep_tones: compare Mandarin finals with their tone digit (``ang4``); False strips tones.
            keep_boundaries: count pause/boundary tokens (``<sp>``, ``<sil>``) as phones.
            frontend: text frontend spec used when none is passed as context.
        """

        pack: str = "exp/st/pack"
        keep_tones: bool = True
        keep_boundaries: bool = False
        frontend: dict = dataclasses.field(default_factory=dict)

    metrics = ("per", "phone_errors", "ref_phones")
    #: How the results table names this metric.
    label = "PER (own ST CTC)"

    def __init__(
        self,
        config: "CtcPhoneErrorRate.Config | None" = None,
        *,
        frontend: Frontend | dict | None = None,
        st_frontend: STFrontend | None = None,
        phone_recognizer: PhoneRecognizer | None = None,
        **context: Any,
    ) -> None:
        super().__init__(config)
        self._setup_phone_scoring("ctc_cer", frontend, st_frontend, phone_recognizer)
        #: ``{utt_id: recognised tokens joined by spaces}`` of the last ``score`` call.
        self.hypotheses: dict[str, str] = {}

    def tokens(self, phones: Sequence[Any]) -> list[str]:
        """Phones -> compared tokens under this scorer's tone/boundary options."""
        return phone_tokens(phones, keep_boundaries=self.config.keep_boundaries, keep_tones=self.config.keep_tones)

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        """Recognise each item's ``wav`` and compare its phones with those of its ``text``."""
        scores = []
        self.hypotheses = {}
        for item in items:
            reference = self.tokens(reference_phones(self.frontend, item.text, item.lang, item.utt_id, "ctc_cer"))
            hypothesis = self.tokens(self.recognizer.recognize(item.wav))
            self.hypotheses[item.utt_id] = " ".join(hypothesis)
            errors, ref_phones = word_errors(" ".join(reference), " ".join(hypothesis))
            scores.append({"per": errors / max(ref_phones, 1), "phone_errors": float(errors), "ref_phones": float(ref_phones)})
        return scores

    def summarize(self, items: Sequence[ScoreItem], scores: Sequence[dict[str, float]]) -> dict[str, float]:
        """``per`` pooled over all reference phones, plus the totals."""
        errors = sum(s["phone_errors"] for s in scores)
        ref_phones = sum(s["ref_phones"] for s in scores)
        return {"per": errors / max(ref_phones, 1.0), "phone_errors": errors, "ref_phones": ref_phones}
