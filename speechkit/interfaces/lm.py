"""Codec language models: autoregressive (level 1) and non-autoregressive (levels 2..L).

Conventions shared by both kinds: tensors in a batch are right-padded and come with lengths;
phone id 0 is padding; ``K`` is the codebook size; language ids index the pipeline's language
table (``num_languages``).
"""
from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, Any

from speechkit.interfaces.base import Component

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass
class ARGeneration:
    """Output of :meth:`ARLanguageModel.generate_batch`.

    codes: one LongTensor[T_b] of new level-1 codes per prompt (end token not included);
    stop_reasons: per prompt, ``"eos"`` (end token), ``"max_length"`` (length guard) or
    ``"loop"`` (repetition guard); frame_phones: only from phone-synchronous models
    (``aligned_ar``), per prompt LongTensor[T_b], the index of each new frame's phone among the
    target-text phones (0 = first target phone), e.g. for a duration-aware NAR; None otherwise.
    """

    codes: list["torch.Tensor"]
    stop_reasons: list[str]
    frame_phones: list["torch.Tensor"] | None = None


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
        ``code_langs`` LongTensor[B] (target language ID of each utterance), optional
        ``prompt_lens`` LongTensor[B] (leading frames of ``codes`` that are an acoustic prompt:
        no loss on them) -> dict with ``loss`` (scalar), ``accuracy`` (scalar, top-1 on the
        counted frames) and ``logits`` FloatTensor[B, T', K+1] where row ``m`` predicts frame
        ``m`` of ``codes + [EOS]`` (``T' = T + 1`` for one frame per step; the last class is
        end-of-sentence). Phone-synchronous models (``aligned_ar``) also read ``durations``
        LongTensor[B, P] aligned with ``phones``: frames of each phone of the target text (0 for
        the prompt transcript's phones), summing to ``code_lens - prompt_lens``; see
        :mod:`speechkit.align.durations` (``add_durations``) for building it per item.
        """

    @abc.abstractmethod
    def generate_batch(
        self,
        phones: "torch.Tensor",
        phone_lens: "torch.Tensor",
        phone_langs: "torch.Tensor",
        prompt_codes: "torch.Tensor",
        prompt_lens: "torch.Tensor",
        target_langs: "torch.Tensor",
        *,
        num_target_phones: "torch.Tensor | None" = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: "torch.Generator | None" = None,
    ) -> ARGeneration:
        """Continue B prompts at once.

        phones, phone_langs: LongTensor[B, P] (prompt transcript + target text, right-padded),
        phone_lens: LongTensor[B]; prompt_codes: LongTensor[B, Tp] level-1 codes of the acoustic
        prompts (right-padded), prompt_lens: LongTensor[B]; target_langs: LongTensor[B] (the
        language ID; another one = accent override); num_target_phones: LongTensor[B] phones of
        the target text, for the length guard (default: all phones). Sampling arguments default
        to the model's config; temperature 0 or top_k 1 is greedy. Each sequence stops on its
        own; greedy output equals one-at-a-time :meth:`generate`.
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
        prompt_codes LongTensor[Tp] -> new level-1 codes LongTensor[T].

        ``sampling``: ``num_target_phones`` (int), ``temperature``, ``top_k``, ``top_p``,
        ``generator`` as in :meth:`generate_batch`.
        """


class NARLanguageModel(Component):
    """Non-causal LM predicting level ``l`` from phones, a prompt and levels ``< l``.

    Context passed when built: ``num_phones``, ``codebook_size``, ``num_quantizers`` (L),
    ``num_languages``.

    Optional extensions, duck-typed: ``attach_codec(codec)`` (stage 5 calls it with the fitted
    codec before training, e.g. to copy its codebooks); ``predicts_features = True`` with
    ``generate_features_batch(...)`` (arguments as :meth:`generate_batch`, returning the codec's
    features FloatTensor[B, T, F]) and ``requantize(features, level1) -> LongTensor[B, L, T]``: the
    pipeline then vocodes the features with ``codec.features_to_wav`` when the codec has it
    (``continuous_nar``).
    """

    @abc.abstractmethod
    def forward(self, batch: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """Training step on one level per batch (random unless ``level`` is given).

        batch: ``phones`` LongTensor[B, P], ``phone_lens`` LongTensor[B], ``phone_langs``
        LongTensor[B, P], ``prompt_codes`` LongTensor[B, L, Tp] (all levels of another utterance
        of the speaker), ``prompt_lens`` LongTensor[B], ``codes`` LongTensor[B, L, T],
        ``code_lens`` LongTensor[B], optional ``level`` (int or 0-d tensor in 2..L), optional
        ``frame_phones`` LongTensor[B, T] (each frame's phone index; stage 5 adds it from the
        aligner's durations for models with ``uses_durations = True``) -> dict with
        ``loss``, ``accuracy`` (scalars), ``logits`` FloatTensor[B, T, K] and ``level``.
        """

    @abc.abstractmethod
    def generate_batch(
        self,
        phones: "torch.Tensor",
        phone_lens: "torch.Tensor",
        phone_langs: "torch.Tensor",
        prompt_codes: "torch.Tensor",
        prompt_lens: "torch.Tensor",
        level1_codes: "torch.Tensor",
        code_lens: "torch.Tensor",
        frame_phones: "torch.Tensor | None" = None,
    ) -> "torch.Tensor":
        """Greedy, level by level, for B items: phones/phone_langs LongTensor[B, P] (target
        text), prompt_codes LongTensor[B, L, Tp], level1_codes LongTensor[B, T] (right-padded,
        lengths ``phone_lens``, ``prompt_lens``, ``code_lens``) -> LongTensor[B, L, T]
        (positions past ``code_lens`` are 0). ``frame_phones`` LongTensor[B, T]: the index among
        the target phones of each frame's phone, when the AR gives it (``ARGeneration.frame_phones``);
        models that do not use an alignment ignore it."""

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
