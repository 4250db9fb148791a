"""Continuous-residual NAR: predicts the codec's features from level-1 codes, phones and a prompt.

The discrete VALL-E X NAR (:mod:`speechkit.plugins.nar_lm.valle_nar`) classifies each level
2..L among K codewords. On a small corpus that is slow to learn: the residual levels of a k-means
RVQ are close to noise individually, while their sum (the detail of the spectrum) is smooth and
predictable. This NAR regresses that sum directly. It is meant for codecs whose dequantisation
is additive, ``dequantize(codes) = sum_l codeword_l[codes_l]`` (any residual VQ), and whose
features a vocoder turns into audio (``codec.features_to_wav``; ``mel_rvq`` does).

Input sequence ``[phones ; prompt ; target]``, non-causal attention over the valid positions:

- phones: phone + phone-language embeddings, positions from 0;
- prompt: the prompt's full features (sum of the codewords of all L levels, projected) plus a
  learned embedding of its level-1 codes;
- target: the level-1 codeword (projected) plus the same learned level-1 embedding, plus an
  embedding of the phone each frame belongs to (``frame_phones``: from the aligner's durations
  in training, from a phone-synchronous AR such as ``aligned_ar`` at inference, else spread
  evenly over the frames); prompt and target form one acoustic segment (target positions
  continue after the prompt's), told apart by a segment embedding.

The frame's phone matters most: the residual detail a 256-entry level-1 codebook leaves out is
largely the phone's (on the default recipe, level-1-only resynthesis has 2x the WER of 8 levels),
and without the alignment a small model did not learn in 10 CPU minutes to find that phone
by attention.

The head predicts the residual ``features - codeword_1[code_1]``; the loss is L1 + MSE against
the sum of the codewords of all levels. The codewords live in the model (a buffer, filled from
the codec by :meth:`ContinuousNAR.attach_codec` before training and saved with the weights), so
the model also returns codes: the predicted residual is re-quantised level by level with the
codec's own codebooks, and ``logits`` of level ``l`` are minus the squared distances of the
remaining residual to level ``l``'s codewords, so accuracy compares with the other NARs.
:meth:`ContinuousNAR.generate_features_batch` returns the features themselves, which the
pipeline hands to the vocoder when the codec has ``features_to_wav``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from speechkit.errors import ConfigError, DataError
from speechkit.interfaces.lm import NARLanguageModel
from speechkit.nn import SinusoidalPositionalEncoding, TransformerStack, key_padding_mask, lengths_to_mask
from speechkit.plugins.nar_lm.inputs import generate_one, init_nar_context, prepare_nar_inputs
from speechkit.registry import NAR_LM


@NAR_LM.register("continuous_nar")
class ContinuousNAR(nn.Module, NARLanguageModel):
    """Continuous-residual NAR (see the module docstring).

    Context: ``num_phones`` (pad id 0), ``codebook_size`` (K), ``num_quantizers`` (L >= 2),
    ``num_languages``.
    """

    #: The pipeline may decode :meth:`generate_features_batch` with ``codec.features_to_wav``.
    predicts_features = True
    #: Stage 5 loads the aligner's durations, so items carry ``frame_phones``.
    uses_durations = True

    @dataclasses.dataclass
    class Config:
        """Options of the continuous-residual NAR.

        Attributes:
            d_model, num_heads, num_layers, ffn_dim, dropout: Transformer size.
            feature_dim: size of the codec's feature frames (80 for ``mel_rvq``'s log-mel);
                :meth:`ContinuousNAR.attach_codec` checks it.
            mse_weight: weight of the MSE term beside the L1 term of the loss.
            level1_noise: in training, the probability that a target frame's level-1 input code
                is replaced by another code (the loss still targets the true features), so the
                model learns to read the content from the aligned phone and to treat level 1 as
                a noisy hint, as it is when the codes come from a sampling AR model.
            level1_noise_neighbours: replacements are drawn among this many nearest level-1
                codewords of the true code (plausible confusions, like a sampling AR's); 0 draws
                uniformly from the whole codebook.
        """

        d_model: int = 256
        num_heads: int = 4
        num_layers: int = 4
        ffn_dim: int = 1024
        dropout: float = 0.1
        feature_dim: int = 80
        mse_weight: float = 1.0
        level1_noise: float = 0.0
        level1_noise_neighbours: int = 8

    def __init__(
        self,
        config: "ContinuousNAR.Config | None" = None,
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
        component = "nar_lm 'continuous_nar'"
        init_nar_context(self, component, config, num_phones, codebook_size, num_quantizers, num_languages)
        if config.feature_dim < 1:
            raise ConfigError(f"{component}: feature_dim must be positive, got {config.feature_dim}.")
        if not 0.0 <= config.level1_noise <= 1.0 or config.level1_noise_neighbours < 0:
            raise ConfigError(f"{component}: level1_noise must lie in [0, 1] and level1_noise_neighbours be >= 0 "
                              f"(got {config.level1_noise}, {config.level1_noise_neighbours}).")
        d, dim = config.d_model, config.feature_dim
        #: FloatTensor[L, K, F]: codeword of each code of each level (from the codec).
        self.register_buffer("codewords", torch.zeros(num_quantizers, codebook_size, dim))  # type: ignore[arg-type]
        #: BoolTensor[L, K]: which codes exist at each level (codecs may size level 1 apart).
        self.register_buffer("code_exists", torch.ones(num_quantizers, codebook_size, dtype=torch.bool))  # type: ignore[arg-type]
        self.register_buffer("codec_attached", torch.zeros((), dtype=torch.bool))
        self.phone_embedding = nn.Embedding(num_phones, d, padding_idx=0)  # type: ignore[arg-type]
        self.phone_language_embedding = nn.Embedding(num_languages, d)  # type: ignore[arg-type]
        self.level1_embedding = nn.Embedding(codebook_size, d)  # type: ignore[arg-type]
        nn.init.normal_(self.level1_embedding.weight, std=d**-0.5)
        self.prompt_projection = nn.Linear(dim, d)
        self.target_projection = nn.Linear(dim, d)
        self.segment_embedding = nn.Embedding(2, d)  # 0: prompt, 1: target
        self.frame_phone_embedding = nn.Embedding(num_phones, d)  # type: ignore[arg-type]
        nn.init.normal_(self.frame_phone_embedding.weight, std=d**-0.5)
        self.phone_positions = SinusoidalPositionalEncoding(d, dropout=config.dropout)
        self.code_positions = SinusoidalPositionalEncoding(d, dropout=config.dropout)
        self.encoder = TransformerStack(num_layers=config.num_layers, d_model=d, num_heads=config.num_heads,
                                        ffn_dim=config.ffn_dim, dropout=config.dropout)
        self.head = nn.Linear(d, dim)
        nn.init.zeros_(self.head.weight)  # start from "no residual": the level-1 codeword alone
        nn.init.zeros_(self.head.bias)

    # -- codebooks -----------------------------------------------------------------------------
    def set_codewords(self, codewords: torch.Tensor, level_sizes: list[int] | None = None) -> None:
        """codewords: FloatTensor[L, K, F], the codec's codeword of every code of every level;
        level_sizes: codes per level (default K each); rows past a level's size are unused."""
        expected = tuple(self.codewords.shape)
        if tuple(codewords.shape) != expected:
            raise ConfigError(
                f"continuous_nar: the codec's codewords are {tuple(codewords.shape)}, the model expects {expected} "
                "(num_quantizers, codebook_size, feature_dim); set nar_lm.feature_dim to the codec's feature size."
            )
        sizes = list(level_sizes) if level_sizes is not None else [self.codebook_size] * self.num_quantizers
        if len(sizes) != self.num_quantizers or not all(1 <= size <= self.codebook_size for size in sizes):
            raise ConfigError(f"continuous_nar: level_sizes {sizes} must give 1..{self.codebook_size} codes for each "
                              f"of the {self.num_quantizers} levels.")
        self.codewords.copy_(codewords.to(self.codewords))
        self.code_exists.copy_(torch.arange(self.codebook_size) < torch.tensor(sizes).unsqueeze(1))
        self.codewords.masked_fill_(~self.code_exists.unsqueeze(-1), 0.0)
        self.codec_attached.fill_(True)

    def attach_codec(self, codec: Any) -> None:
        """Copy the codewords of an additive residual-VQ codec (``codec.dequantize(codes[L', T])``
        -> FloatTensor[T, F] equal to the sum of one codeword per level).

        Raises:
            ConfigError: the codec has no ``dequantize``, its dequantisation is not additive, or
                its layout does not match the model.
        """
        dequantize = getattr(codec, "dequantize", None)
        if not callable(dequantize):
            raise ConfigError(f"nar_lm 'continuous_nar' needs a codec with dequantize(codes) (residual VQ); "
                              f"{type(codec).__name__} has none. Use nar_lm.name=valle_nar with this codec.")
        levels, size = self.num_quantizers, self.codebook_size
        sizes = [int(n) for n in getattr(codec, "codebook_sizes", [size] * levels)]
        if len(sizes) != levels:
            raise ConfigError(f"nar_lm 'continuous_nar': the codec has {len(sizes)} levels, the model {levels}.")
        with torch.no_grad():
            codes = torch.zeros(levels, max(sizes), dtype=torch.long)
            previous = torch.zeros(())
            tables = []
            for level, level_size in enumerate(sizes, start=1):
                codes[level - 1, :level_size] = torch.arange(level_size)
                cumulative = dequantize(codes[:level]).float()  # [K', F]: levels < level at code 0
                table = torch.zeros(size, cumulative.shape[-1])
                table[:level_size] = (cumulative - previous)[:level_size]
                tables.append(table)
                codes[level - 1] = 0
                previous = dequantize(codes[:level]).float()[:1]
            codewords = torch.stack(tables)
            generator = torch.Generator().manual_seed(0)
            probe = torch.stack([torch.randint(0, n, (7,), generator=generator) for n in sizes])
            summed = codewords.gather(1, probe.unsqueeze(-1).expand(-1, -1, codewords.shape[-1])).sum(0)
            if not torch.allclose(summed, dequantize(probe).float(), atol=1e-4, rtol=1e-4):
                raise ConfigError("nar_lm 'continuous_nar': the codec's dequantize is not a sum of one codeword per "
                                  "level, so its residual cannot be re-quantised. Use nar_lm.name=valle_nar.")
        self.set_codewords(codewords, sizes)

    def _require_codec(self) -> None:
        if not bool(self.codec_attached):
            raise ConfigError("continuous_nar has no codewords yet: call attach_codec(codec) (stage 5 does) "
                              "or load a trained pack.")

    def features_of(self, codes: torch.Tensor, num_levels: int | None = None) -> torch.Tensor:
        """codes: LongTensor[B, >=n, T] -> FloatTensor[B, T, F], the sum of the codewords of levels 1..n
        (n = ``num_levels`` or all)."""
        num_levels = codes.shape[1] if num_levels is None else num_levels
        total = self.codewords[0][codes[:, 0]]
        for level in range(2, num_levels + 1):
            total = total + self.codewords[level - 1][codes[:, level - 1]]
        return total

    def corrupt_level1(self, level1: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training-time input noise: level1 LongTensor[B, T] -> LongTensor[B, T] with each code
        replaced, with probability ``level1_noise``, by one of its ``level1_noise_neighbours``
        nearest level-1 codewords (itself excluded; uniformly over the existing codes if 0)."""
        config = self.config
        if config.level1_noise <= 0.0:
            return level1
        device = level1.device
        replace = torch.rand(level1.shape, generator=generator, device=device) < config.level1_noise
        exists = self.code_exists[0]
        num_codes = int(exists.sum())
        neighbours = min(config.level1_noise_neighbours, num_codes - 1)
        if neighbours < 1:
            pool = exists.nonzero().flatten()
            drawn = pool[torch.randint(0, len(pool), level1.shape, generator=generator, device=device)]
        else:
            table = self.codewords[0]  # [K, F]
            distances = torch.cdist(table, table)
            distances.fill_diagonal_(float("inf"))
            distances[:, ~exists] = float("inf")
            nearest = distances.topk(neighbours, dim=1, largest=False).indices  # [K, N]
            choice = torch.randint(0, neighbours, level1.shape, generator=generator, device=device)
            drawn = nearest[level1, choice]
        return torch.where(replace, drawn, level1)

    # -- the network ---------------------------------------------------------------------------
    def _predict(
        self,
        phones: torch.Tensor,
        phone_lens: torch.Tensor,
        phone_langs: torch.Tensor,
        prompt_codes: torch.Tensor,
        prompt_lens: torch.Tensor,
        level1: torch.Tensor,
        code_lens: torch.Tensor,
        frame_phones: torch.Tensor | None,
    ) -> torch.Tensor:
        """Padded inputs (zeros in padding) -> predicted features FloatTensor[B, T, F]."""
        batch_size, num_phones = phones.shape
        prompt_frames, num_frames = prompt_codes.shape[2], level1.shape[1]
        device = phones.device
        phone_x = self.phone_embedding(phones) + self.phone_language_embedding(phone_langs)
        phone_x = self.phone_positions(phone_x, torch.arange(num_phones, device=device).expand(batch_size, -1))
        prompt_x = (self.prompt_projection(self.features_of(prompt_codes)) + self.level1_embedding(prompt_codes[:, 0])
                    + self.segment_embedding.weight[0])
        prompt_x = self.code_positions(prompt_x, torch.arange(prompt_frames, device=device).expand(batch_size, -1))
        level1_features = self.codewords[0][level1]  # [B, T, F]
        frame_phones = self._frame_phones(frame_phones, phone_lens, code_lens, num_frames)
        target_x = (self.target_projection(level1_features) + self.level1_embedding(level1)
                    + self.frame_phone_embedding(phones.gather(1, frame_phones)) + self.segment_embedding.weight[1])
        positions = prompt_lens.unsqueeze(1) + torch.arange(num_frames, device=device)  # continue after the prompt
        target_x = self.code_positions(target_x, positions)
        x = torch.cat([phone_x, prompt_x, target_x], dim=1)
        valid = torch.cat([lengths_to_mask(phone_lens, num_phones), lengths_to_mask(prompt_lens, prompt_frames),
                           lengths_to_mask(code_lens, num_frames)], dim=1)
        hidden = self.encoder(x, key_padding_mask(valid))[:, num_phones + prompt_frames :]
        return level1_features + self.head(hidden)

    @staticmethod
    def _frame_phones(frame_phones: torch.Tensor | None, phone_lens: torch.Tensor, code_lens: torch.Tensor,
                      num_frames: int) -> torch.Tensor:
        """Index of each target frame's phone, LongTensor[B, T] (0 at padding): ``frame_phones``
        checked, or without it the phones spread evenly over each item's frames.

        Raises:
            DataError: ``frame_phones`` is not [B, T] or points past an item's phones.
        """
        valid = lengths_to_mask(code_lens, num_frames)
        if frame_phones is None:
            frames = torch.arange(num_frames, device=code_lens.device)
            spread = frames * phone_lens.unsqueeze(1) // code_lens.clamp(min=1).unsqueeze(1)
            return spread.masked_fill(~valid, 0)
        if frame_phones.shape != (code_lens.shape[0], num_frames):
            raise DataError(f"continuous_nar: frame_phones must be [B, T] = {(code_lens.shape[0], num_frames)}, "
                            f"got {tuple(frame_phones.shape)}.")
        frame_phones = frame_phones.masked_fill(~valid, 0)
        if bool((frame_phones < 0).any()) or bool((frame_phones >= phone_lens.clamp(min=1).unsqueeze(1)).any()):
            raise DataError("continuous_nar: frame_phones must index each item's phones (0..phone_lens-1).")
        return frame_phones

    def _level_logits(self, residual: torch.Tensor, level: int) -> torch.Tensor:
        """residual FloatTensor[B, T, F] -> logits of ``level`` [B, T, K]: minus squared distances."""
        table = self.codewords[level - 1]  # [K, F]
        logits = -(residual.pow(2).sum(-1, keepdim=True) - 2 * residual @ table.T + table.pow(2).sum(-1))
        return logits.masked_fill(~self.code_exists[level - 1], float("-inf"))

    def requantize(self, features: torch.Tensor, level1: torch.Tensor) -> torch.Tensor:
        """Greedy residual quantisation of levels 2..L: features FloatTensor[B, T, F], level1
        LongTensor[B, T] -> LongTensor[B, L, T]."""
        codes = [level1]
        residual = features - self.codewords[0][level1]
        for level in range(2, self.num_quantizers + 1):
            chosen = self._level_logits(residual, level).argmax(-1)
            codes.append(chosen)
            residual = residual - self.codewords[level - 1][chosen]
        return torch.stack(codes, dim=1)

    # -- the NAR interface ---------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Feature regression (see :meth:`NARLanguageModel.forward` for the batch keys; optional
        ``frame_phones`` LongTensor[B, T], each frame's phone index, see the module docstring).

        ``loss`` is L1 + ``mse_weight`` x MSE over the target frames (independent of the level);
        ``logits``/``accuracy`` are of ``level`` (given, or drawn from 2..L), with the true
        lower levels subtracted (teacher forcing); ``feature_l1`` is the L1 term alone.
        """
        self._require_codec()
        phones, phone_lens, phone_langs = batch["phones"], batch["phone_lens"], batch["phone_langs"]
        prompt_codes, prompt_lens = batch["prompt_codes"], batch["prompt_lens"]
        codes, code_lens = batch["codes"], batch["code_lens"]
        phones, phone_langs, prompt_codes, codes = prepare_nar_inputs(
            "continuous_nar", self, phones, phone_lens, phone_langs, prompt_codes, prompt_lens, codes, code_lens)
        if codes.shape[1] != self.num_quantizers:
            raise DataError(f"continuous_nar: training codes need all {self.num_quantizers} levels, got {codes.shape[1]}.")
        if batch.get("level") is not None:
            level = int(batch["level"])
            if not 2 <= level <= self.num_quantizers:
                raise DataError(f"continuous_nar: level must lie in 2..{self.num_quantizers}, got {level}.")
        else:
            level = int(torch.randint(2, self.num_quantizers + 1, ()))
        level1 = self.corrupt_level1(codes[:, 0]) if self.training else codes[:, 0]
        predicted = self._predict(phones, phone_lens, phone_langs, prompt_codes, prompt_lens, level1, code_lens,
                                  batch.get("frame_phones"))
        target = self.features_of(codes)
        counted = lengths_to_mask(code_lens, codes.shape[2])
        error = (predicted - target)[counted].float()
        l1 = error.abs().mean()
        loss = l1 + self.config.mse_weight * error.pow(2).mean()
        logits = self._level_logits(predicted - self.features_of(codes, level - 1), level)
        accuracy = (logits.argmax(-1)[counted] == codes[:, level - 1][counted]).float().mean()
        return {"loss": loss, "logits": logits, "accuracy": accuracy.detach(), "level": torch.tensor(level),
                "feature_l1": l1.detach()}

    @torch.no_grad()
    def generate_features_batch(
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
        """Arguments as :meth:`generate_batch` -> predicted features FloatTensor[B, T, F]
        (positions past ``code_lens`` are 0)."""
        self._require_codec()
        codes = level1_codes.unsqueeze(1)
        phones, phone_langs, prompt_codes, codes = prepare_nar_inputs(
            "continuous_nar", self, phones, phone_lens, phone_langs, prompt_codes, prompt_lens, codes, code_lens)
        features = self._predict(phones, phone_lens, phone_langs, prompt_codes, prompt_lens, codes[:, 0], code_lens,
                                 frame_phones)
        return features.masked_fill(~lengths_to_mask(code_lens, codes.shape[2]).unsqueeze(-1), 0.0)

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
        """Predicted features re-quantised (see :meth:`NARLanguageModel.generate_batch`;
        ``frame_phones`` LongTensor[B, T] optional) -> LongTensor[B, L, T]."""
        features = self.generate_features_batch(phones, phone_lens, phone_langs, prompt_codes, prompt_lens,
                                                level1_codes, code_lens, frame_phones)
        valid = lengths_to_mask(code_lens, level1_codes.shape[1])
        level1 = level1_codes.masked_fill(~valid, 0)
        return self.requantize(features, level1).masked_fill(~valid.unsqueeze(1), 0)

    @torch.no_grad()
    def generate(
        self, phones: torch.Tensor, phone_langs: torch.Tensor, prompt_codes: torch.Tensor, level1_codes: torch.Tensor
    ) -> torch.Tensor:
        """One item (see :meth:`NARLanguageModel.generate`) -> LongTensor[L, T]."""
        return generate_one(self, phones, phone_langs, prompt_codes, level1_codes)
