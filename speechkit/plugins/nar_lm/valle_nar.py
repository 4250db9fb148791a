"""VALL-E X non-autoregressive codec LM: predicts level ``l`` (2..L) for all frames at once.

Input sequence: ``[phones ; prompt ; target]`` with full (non-causal) attention over the valid
positions. Phones: phone + phone-language embeddings, positions from 0. Prompt: the sum of the
embeddings of all L levels of an acoustic prompt (another utterance of the speaker). Target: the
sum of the embeddings of levels ``1..l-1`` of the current utterance; prompt and target form one
acoustic segment, so target positions continue after the prompt's. Every layer norm is a
separate LayerNorm per generated level (VALL-E X), see :class:`speechkit.nn.LevelLayerNorm`.
The output projection of level ``l`` shares its weight with the input embedding of level
``l + 1`` (``tie_weights``). Training draws one level per step from the torch RNG; generation is
greedy, level by level.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speechkit.errors import DataError
from speechkit.interfaces.lm import NARLanguageModel
from speechkit.nn import SinusoidalPositionalEncoding, TransformerStack, key_padding_mask, lengths_to_mask
from speechkit.plugins.nar_lm.inputs import generate_one, init_nar_context, prepare_nar_inputs
from speechkit.registry import NAR_LM


@NAR_LM.register("valle_nar")
class ValleNAR(nn.Module, NARLanguageModel):
    """The VALL-E X NAR LM (see the module docstring).

    Context: ``num_phones`` (pad id 0), ``codebook_size`` (K), ``num_quantizers`` (L >= 2),
    ``num_languages``.
    """

    @dataclasses.dataclass
    class Config:
        """Options of the VALL-E X NAR LM.

        Attributes:
            d_model, num_heads, num_layers, ffn_dim, dropout: Transformer size (paper: 1024, 16,
                12, 4096).
            tie_weights: share the output projection of level l with the input embedding of
                level l+1 (the paper's choice).
        """

        d_model: int = 256
        num_heads: int = 4
        num_layers: int = 4
        ffn_dim: int = 1024
        dropout: float = 0.1
        tie_weights: bool = True

    def __init__(
        self,
        config: "ValleNAR.Config | None" = None,
        *,
        num_phones: int | None = None,
        codebook_size: int | None = None,
        num_quantizers: int | None = None,
        num_languages: int | None = None,
        **context: Any,
    ) -> None:
        nn.Module.__init__(self)
        NARLanguageModel.__init__(self, config)
        config = self.config
        component = "nar_lm 'valle_nar'"
        init_nar_context(self, component, config, num_phones, codebook_size, num_quantizers, num_languages)
        d = config.d_model
        self.phone_embedding = nn.Embedding(num_phones, d, padding_idx=0)  # type: ignore[arg-type]
        self.phone_language_embedding = nn.Embedding(num_languages, d)  # type: ignore[arg-type]
        self.code_embeddings = nn.ModuleList(nn.Embedding(codebook_size, d) for _ in range(num_quantizers))  # type: ignore[arg-type]
        self.phone_positions = SinusoidalPositionalEncoding(d, dropout=config.dropout)
        self.code_positions = SinusoidalPositionalEncoding(d, dropout=config.dropout)
        self.encoder = TransformerStack(
            num_layers=config.num_layers,
            d_model=d,
            num_heads=config.num_heads,
            ffn_dim=config.ffn_dim,
            dropout=config.dropout,
            num_conditions=num_quantizers - 1,  # type: ignore[operator]
        )
        self.heads = nn.ModuleList(nn.Linear(d, codebook_size, bias=False) for _ in range(num_quantizers - 1))  # type: ignore[arg-type,operator]
        if config.tie_weights:
            for level in range(2, num_quantizers):  # type: ignore[arg-type]
                self.heads[level - 2].weight = self.code_embeddings[level].weight  # head l <-> embedding l+1

    def head(self, level: int) -> nn.Linear:
        """Output projection of ``level`` (2..L): FloatTensor[..., D] -> logits [..., K]."""
        return self.heads[level - 2]  # type: ignore[return-value]

    def logit_scale(self, level: int) -> float:
        """Factor on the logits of ``level``: ``d_model ** -0.5`` where the head is tied to an
        embedding (its rows have norm ~sqrt(d), so unscaled logits start with std ~sqrt(d) and
        the loss far above uniform), 1 for an untied head."""
        tied = self.config.tie_weights and level < self.num_quantizers  # type: ignore[operator]
        return self.config.d_model ** -0.5 if tied else 1.0

    def embedding(self, level: int) -> nn.Embedding:
        """Input embedding of ``level`` (1..L)."""
        return self.code_embeddings[level - 1]  # type: ignore[return-value]

    def _sum_levels(self, codes: torch.Tensor, num_levels: int) -> torch.Tensor:
        """codes: LongTensor[B, >=num_levels, T] -> FloatTensor[B, T, D], sum of levels 1..num_levels."""
        total = self.embedding(1)(codes[:, 0])
        for level in range(2, num_levels + 1):
            total = total + self.embedding(level)(codes[:, level - 1])
        return total

    def _context(
        self, phones: torch.Tensor, phone_lens: torch.Tensor, phone_langs: torch.Tensor, prompt_codes: torch.Tensor, prompt_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Phone and prompt part: FloatTensor[B, P+Tp, D] (positioned) and its BoolTensor[B, P+Tp] validity."""
        batch_size, num_phones = phones.shape
        prompt_frames = prompt_codes.shape[2]
        phone_x = self.phone_embedding(phones) + self.phone_language_embedding(phone_langs)
        phone_x = self.phone_positions(phone_x, torch.arange(num_phones, device=phones.device).expand(batch_size, -1))
        prompt_x = self.code_positions(
            self._sum_levels(prompt_codes, self.num_quantizers),
            torch.arange(prompt_frames, device=phones.device).expand(batch_size, -1),
        )
        valid = torch.cat([lengths_to_mask(phone_lens, num_phones), lengths_to_mask(prompt_lens, prompt_frames)], dim=1)
        return torch.cat([phone_x, prompt_x], dim=1), valid

    def _level_logits(
        self,
        context: torch.Tensor,
        context_valid: torch.Tensor,
        prompt_lens: torch.Tensor,
        codes: torch.Tensor,
        code_lens: torch.Tensor,
        level: int,
    ) -> torch.Tensor:
        """Logits of ``level`` for every target frame: FloatTensor[B, T, K] given codes [B, >=level-1, T]."""
        batch_size, _, num_frames = codes.shape
        positions = prompt_lens.unsqueeze(1) + torch.arange(num_frames, device=codes.device)  # continue after the prompt
        target_x = self.code_positions(self._sum_levels(codes, level - 1), positions)
        x = torch.cat([context, target_x], dim=1)
        valid = torch.cat([context_valid, lengths_to_mask(code_lens, num_frames)], dim=1)
        condition = torch.full((batch_size,), level - 2, dtype=torch.long, device=codes.device)
        hidden = self.encoder(x, key_padding_mask(valid), condition=condition)[:, context.shape[1] :]
        return self.head(level)(hidden) * self.logit_scale(level)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One level per step (see :meth:`NARLanguageModel.forward` for the batch keys)."""
        phones, phone_lens, phone_langs = batch["phones"], batch["phone_lens"], batch["phone_langs"]
        prompt_codes, prompt_lens = batch["prompt_codes"], batch["prompt_lens"]
        codes, code_lens = batch["codes"], batch["code_lens"]
        phones, phone_langs, prompt_codes, codes = prepare_nar_inputs(
            "valle_nar", self, phones, phone_lens, phone_langs, prompt_codes, prompt_lens, codes, code_lens)
        if batch.get("level") is not None:
            level = int(batch["level"])
            if not 2 <= level <= self.num_quantizers:
                raise DataError(f"valle_nar: level must lie in 2..{self.num_quantizers}, got {level}.")
        else:
            level = int(torch.randint(2, self.num_quantizers + 1, ()))
        context, context_valid = self._context(phones, phone_lens, phone_langs, prompt_codes, prompt_lens)
        logits = self._level_logits(context, context_valid, prompt_lens, codes, code_lens, level)  # [B, T, K]
        counted = lengths_to_mask(code_lens, codes.shape[2])
        chosen_logits, chosen_targets = logits[counted], codes[:, level - 1][counted]
        loss = F.cross_entropy(chosen_logits.float(), chosen_targets)
        accuracy = (chosen_logits.argmax(-1) == chosen_targets).float().mean()
        return {"loss": loss, "logits": logits, "accuracy": accuracy.detach(), "level": torch.tensor(level)}

    @torch.no_grad()
    def generate_batch(
        self,
        phones: torch.Tensor,
        phone_lens: torch.Tensor,
        phone_langs: torch.Tensor,
        prompt_codes: torch.Tensor,
        prompt_lens: torch.Tensor,
        level1_codes: torch.Tensor,
        code_lens: torch.Tensor,
        frame_phones: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Greedy levels 2..L (see :meth:`NARLanguageModel.generate_batch`; ``frame_phones`` is not
        used) -> LongTensor[B, L, T]."""
        batch_size, num_frames = level1_codes.shape
        codes = torch.zeros(batch_size, self.num_quantizers, num_frames, dtype=torch.long, device=level1_codes.device)
        codes[:, 0] = level1_codes
        phones, phone_langs, prompt_codes, codes = prepare_nar_inputs(
            "valle_nar", self, phones, phone_lens, phone_langs, prompt_codes, prompt_lens, codes, code_lens)
        valid = lengths_to_mask(code_lens, num_frames)
        context, context_valid = self._context(phones, phone_lens, phone_langs, prompt_codes, prompt_lens)
        for level in range(2, self.num_quantizers + 1):
            logits = self._level_logits(context, context_valid, prompt_lens, codes[:, : level - 1], code_lens, level)
            codes[:, level - 1] = logits.argmax(-1).masked_fill(~valid, 0)
        return codes

    @torch.no_grad()
    def generate(
        self, phones: torch.Tensor, phone_langs: torch.Tensor, prompt_codes: torch.Tensor, level1_codes: torch.Tensor
    ) -> torch.Tensor:
        """One item (see :meth:`NARLanguageModel.generate`) -> LongTensor[L, T]."""
        return generate_one(self, phones, phone_langs, prompt_codes, level1_codes)
