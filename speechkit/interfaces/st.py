"""Speech recognition & translation frontend: speech -> source phones and target phones."""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Sequence

from speechkit.interfaces.base import Component
from speechkit.interfaces.frontend import PhoneSequence

if TYPE_CHECKING:
    import torch


class STFrontend(Component):
    """Recognises the source language phones (CTC) and translates them (attention decoder)."""

    @abc.abstractmethod
    def recognize(self, wav: "torch.Tensor", sample_rate: int) -> PhoneSequence:
        """wav FloatTensor[S] -> source-language phones."""

    @abc.abstractmethod
    def translate(self, wav: "torch.Tensor", sample_rate: int, target_lang: str) -> PhoneSequence:
        """wav FloatTensor[S] -> target-language phones."""

    def phone_log_likelihood(self, wavs: Sequence["torch.Tensor"], sample_rate: int,
                             phones: Sequence[Sequence[str]]) -> list[float]:
        """How likely each waveform says its phones: B waveforms FloatTensor[S_b] and B phone-token
        sequences -> B log-likelihoods per phone (higher is better, ``-inf`` if impossible).

        Optional: the pipeline's candidate reranking (``SynthesisOptions.candidates``) needs it.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot score phones of audio; candidate reranking "
                                  "needs an ST frontend with phone_log_likelihood (e.g. transformer_st).")
