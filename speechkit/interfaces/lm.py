"""Codec language models: autoregressive (level 1) and non-autoregressive (levels 2..L)."""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

from speechkit.interfaces.base import Component

if TYPE_CHECKING:
    import torch


class ARLanguageModel(Component):
    """Decoder-only LM over <phones ; level-1 tokens> (VALL-E X AR).

    Context passed when built: ``num_phones`` (phone table size), ``codebook_size``,
    ``num_languages``.
    """

    @abc.abstractmethod
    def forward(self, batch: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """Teacher-forced training step.

        batch: ``phones`` LongTensor[B, P], ``phone_lens`` LongTensor[B], ``phone_langs``
        LongTensor[B, P], ``codes`` LongTensor[B, T] (level 1), ``code_lens`` LongTensor[B],
        ``code_langs`` LongTensor[B] -> dict with ``loss`` (scalar) and ``logits``
        FloatTensor[B, T+1, K+1] (the last class is end-of-sentence).
        """

    @abc.abstractmethod
    def generate(
        self,
        phones: "torch.Tensor",
        phone_langs: "torch.Tensor",
        prompt_codes: "torch.Tensor",
        target_lang: int,
        **sampling: Any,
    ) -> "torch.Tensor":
        """phones LongTensor[P] (prompt transcript + target text), phone_langs LongTensor[P],
        prompt_codes LongTensor[Tp] -> new level-1 codes LongTensor[T]."""


class NARLanguageModel(Component):
    """Non-causal LM predicting level ``l`` from phones, a prompt and levels ``< l``."""

    @abc.abstractmethod
    def forward(self, batch: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """Training step on one random level per batch -> dict with ``loss``."""

    @abc.abstractmethod
    def generate(
        self,
        phones: "torch.Tensor",
        phone_langs: "torch.Tensor",
        prompt_codes: "torch.Tensor",
        level1_codes: "torch.Tensor",
    ) -> "torch.Tensor":
        """phones LongTensor[P], prompt_codes LongTensor[L, Tp], level1_codes LongTensor[T]
        -> all levels LongTensor[L, T] (greedy)."""
