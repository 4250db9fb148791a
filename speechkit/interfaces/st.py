"""Speech recognition & translation frontend: speech -> source phones and target phones."""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING

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
