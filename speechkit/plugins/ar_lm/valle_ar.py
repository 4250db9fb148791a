"""VALL-E X autoregressive codec LM: <phones ; level-1 tokens> -> next level-1 token.

Layout of one sequence: the phone segment (bidirectional among itself) followed by the acoustic
segment ``[BOS, c_1, ..., c_T]`` (causal, sees every phone), each with its own sinusoidal
positions starting at 0. Embeddings: phone + phone-language (per phone, so code-switched text
works) and acoustic token + target language ID (per frame, as in VALL-E X; passing another
language ID is the accent override). Classes out: the ``K`` codes plus end-of-sentence ``K``;
classes in: those plus begin-of-sentence ``K + 1``.

Optional frame stacking (``frames_per_step = k``): each step reads ``k`` level-1 codes (their
embeddings summed, one table slot per position in the group) and predicts the next ``k`` with
``k`` heads. Logits are returned flattened to one row per frame, so with ``k = 1`` this is the
paper's model.

Decoding guards (documented in :class:`ValleAR.Config`): a length bound from the number of
target phones, a ban on a token that has run too long, and a stop on an n-gram loop.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speechkit.errors import ConfigError, DataError
from speechkit.interfaces.lm import ARGeneration, ARLanguageModel
from speechkit.nn import (
    KVCache,
    SinusoidalPositionalEncoding,
    TransformerStack,
    lengths_to_mask,
    phones_then_frames_mask,
    prompt_segment_layout,
    sample_tokens,
    zero_phone_padding,
)
from speechkit.nn.checks import check_id_range, check_transformer_size, require_int_context
from speechkit.nn.sampling import check_sampling
from speechkit.registry import AR_LM


@dataclasses.dataclass
class ARDecodingState:
    """What :meth:`ValleAR.decode_step` needs between steps.

    cache: the preallocated KV cache; start: index where the next step writes (shared by the
    batch); positions: LongTensor[B], acoustic position of the next step per sequence;
    target_langs: LongTensor[B]; rows: LongTensor[R], the sequences still decoding (a batched
    generation sets it when some have ended; None: all): steps may skip the others, whose
    logits are then to be ignored. What prefill computes once for the steps: position_terms
    FloatTensor[N, D], the scaled positional encodings of the acoustic positions 0..N-1 (every
    position the steps reach), and language_terms FloatTensor[B, D], the target languages'
    embeddings.
    """

    cache: KVCache
    start: int
    positions: torch.Tensor
    target_langs: torch.Tensor
    rows: torch.Tensor | None = dataclasses.field(default=None, kw_only=True)
    position_terms: torch.Tensor | None = dataclasses.field(default=None, kw_only=True)
    language_terms: torch.Tensor | None = dataclasses.field(default=None, kw_only=True)

    def skip_finished(self, finished: torch.Tensor) -> None:
        """Let the sequences marked in ``finished`` (BoolTensor[B]) skip the next steps."""
        self.rows = (~finished).nonzero().flatten()


@AR_LM.register("valle_ar")
class ValleAR(nn.Module, ARLanguageModel):
    """The VALL-E X multilingual AR LM (see the module docstring).

    Context: ``num_phones`` (phone table size incl. specials, pad id 0), ``codebook_size`` (K),
    ``num_languages`` (language-ID table size).
    """

    @dataclasses.dataclass
    class Config:
        """Options of the VALL-E X AR LM.

        Attributes:
            d_model, num_heads, num_layers, ffn_dim, dropout: Transformer size (paper: 1024, 16,
                12, 4096).
            frames_per_step: level-1 codes read and predicted per step (1 = the paper).
            max_frames_per_phone, max_frames_margin, max_frames: generation stops (reason
                ``max_length``) after ``min(max_frames, ceil(max_frames_per_phone * target
                phones) + max_frames_margin)`` frames when no end token came.
            repeat_run_limit: when the last this-many frames are one token, that token is banned
                for the next step (a penalty, not a stop); 0 = off.
            loop_max_period, loop_min_repeats: when the last frames are a block of 2..period
                frames repeated ``loop_min_repeats`` times, the sequence stops (reason ``loop``)
                and keeps one copy of the block; 0 repeats = off.
            temperature, top_k, top_p: default sampling (``generate`` arguments override them);
                temperature 0 or top_k 1 is greedy.
        """

        d_model: int = 256
        num_heads: int = 4
        num_layers: int = 4
        ffn_dim: int = 1024
        dropout: float = 0.1
        frames_per_step: int = 1
        max_frames_per_phone: float = 12.0
        max_frames_margin: int = 40
        max_frames: int = 3000
        repeat_run_limit: int = 120
        loop_max_period: int = 8
        loop_min_repeats: int = 12
        temperature: float = 1.0
        top_k: int = 0
        top_p: float = 1.0

    def __init__(
        self,
        config: "ValleAR.Config | None" = None,
        *,
        num_phones: int | None = None,
        codebook_size: int | None = None,
        num_languages: int | None = None,
        **context: Any,
    ) -> None:
        nn.Module.__init__(self)
        ARLanguageModel.__init__(self, config)
        config = self.config
        component = f"ar_lm {self.registered_name or 'valle_ar'!r}"  # aligned_ar builds through here too
        require_int_context(component, num_phones=num_phones, codebook_size=codebook_size, num_languages=num_languages)
        check_transformer_size(component, config.d_model, config.num_heads, config.num_layers, config.ffn_dim,
                               config.dropout)
        check_sampling(config.temperature, config.top_k, config.top_p, component)
        if config.frames_per_step < 1:
            raise ConfigError(f"{component}: frames_per_step must be >= 1, got {config.frames_per_step}.")
        self.num_phones, self.codebook_size, self.num_languages = num_phones, codebook_size, num_languages
        self.eos_id, self.bos_id = codebook_size, codebook_size + 1
        self.input_vocab = codebook_size + 2
        k, d = config.frames_per_step, config.d_model
        self.phone_embedding = nn.Embedding(num_phones, d, padding_idx=0)
        self.phone_language_embedding = nn.Embedding(num_languages, d)
        self.code_embedding = nn.Embedding(k * self.input_vocab, d)  # slot j of a group uses rows j*(K+2)...
        self.language_embedding = nn.Embedding(num_languages, d)
        self.phone_positions = SinusoidalPositionalEncoding(d, dropout=config.dropout)
        self.code_positions = SinusoidalPositionalEncoding(d, dropout=config.dropout)
        self.decoder = TransformerStack(
            num_layers=config.num_layers, d_model=d, num_heads=config.num_heads, ffn_dim=config.ffn_dim, dropout=config.dropout
        )
        self.head = nn.Linear(d, k * (codebook_size + 1))
        self.register_buffer("slot_offsets", torch.arange(k) * self.input_vocab, persistent=False)

    # -- embeddings --------------------------------------------------------------------------
    def _embed_phones(self, phones: torch.Tensor, phone_langs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """phones, phone_langs, positions: LongTensor[B, P] -> FloatTensor[B, P, D]."""
        x = self.phone_embedding(phones) + self.phone_language_embedding(phone_langs)
        return self.phone_positions(x, positions)

    def _embed_groups(self, groups: torch.Tensor, langs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """groups: LongTensor[B, N, k] (codes, EOS or BOS), langs: LongTensor[B], positions: [B, N]
        -> FloatTensor[B, N, D]: summed slot embeddings + target language ID."""
        x = self.code_embedding(groups + self.slot_offsets).sum(dim=2)  # [B, N, D]
        x = x + self.language_embedding(langs).unsqueeze(1)
        return self.code_positions(x, positions)

    def _position_terms(self, positions: torch.Tensor, max_steps: int) -> torch.Tensor:
        """What ``code_positions`` adds at the acoustic positions the decoding steps reach, from
        the first ones ``positions`` LongTensor[B] on: FloatTensor[max(positions) + max_steps, D]
        (the same numbers as computing them step by step)."""
        reached = torch.arange(int(positions.max()) + max_steps if positions.numel() else 1, device=positions.device)
        return self.code_positions.alpha * self.code_positions.encoding(reached)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: FloatTensor[B, N, D] -> FloatTensor[B, N, k, K+1]."""
        batch, steps, _ = hidden.shape
        return self.head(hidden).view(batch, steps, self.config.frames_per_step, self.codebook_size + 1)

    # -- training ----------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Teacher-forced next-token loss on level-1 codes (see :meth:`ARLanguageModel.forward`).

        Returns ``loss`` (mean CE over target frames incl. the end token), ``accuracy`` (top-1 on
        the same frames) and ``logits`` FloatTensor[B, S*k, K+1] with ``S = ceil((T+1)/k)``: row
        ``m`` predicts frame ``m`` of ``codes + [EOS]`` (so ``[B, T+1, K+1]`` when ``k = 1``).
        """
        phones, phone_lens, phone_langs, codes, code_lens, code_langs = self._checked_batch(batch)
        k, eos = self.config.frames_per_step, self.eos_id
        batch_size, num_phones = phones.shape
        num_frames = codes.shape[1]
        steps = math.ceil((num_frames + 1) / k)
        code_valid = lengths_to_mask(code_lens, num_frames)
        targets = torch.full((batch_size, steps * k), eos, dtype=torch.long, device=codes.device)
        targets[:, :num_frames] = codes.masked_fill(~code_valid, eos)  # [B, S*k]: codes, EOS, EOS...
        inputs = torch.cat([torch.full_like(targets[:, :k], self.bos_id), targets[:, : (steps - 1) * k]], dim=1)
        groups = inputs.view(batch_size, steps, k)
        step_valid = lengths_to_mask(torch.div(code_lens + k, k, rounding_mode="floor"), steps)  # ceil((len+1)/k)
        phones, phone_langs, phone_valid = zero_phone_padding(phones, phone_lens, phone_langs)
        positions = torch.arange(max(num_phones, steps), device=phones.device)
        x = torch.cat(
            [
                self._embed_phones(phones, phone_langs, positions[:num_phones].expand(batch_size, -1)),
                self._embed_groups(groups, code_langs, positions[:steps].expand(batch_size, -1)),
            ],
            dim=1,
        )  # [B, P+S, D]
        _, mask = phones_then_frames_mask(phone_valid, step_valid)
        hidden = self.decoder(x, mask)[:, num_phones:]  # [B, S, D]
        logits = self._logits(hidden).flatten(1, 2)  # [B, S*k, K+1]
        frame_index = torch.arange(steps * k, device=codes.device)
        counted = frame_index <= code_lens.unsqueeze(1)  # frames 0..T_b (T_b is EOS)
        if "prompt_lens" in batch:  # leading frames that are the prompt: no loss on them
            counted = counted & (frame_index >= batch["prompt_lens"].unsqueeze(1))
        chosen_logits, chosen_targets = logits[counted], targets[counted]
        loss = F.cross_entropy(chosen_logits.float(), chosen_targets)
        accuracy = (chosen_logits.argmax(-1) == chosen_targets).float().mean()
        return {"loss": loss, "logits": logits, "accuracy": accuracy.detach()}

    # -- incremental decoding ----------------------------------------------------------------
    @torch.no_grad()
    def prefill(
        self,
        phones: torch.Tensor,
        phone_lens: torch.Tensor,
        phone_langs: torch.Tensor,
        prompt_codes: torch.Tensor,
        prompt_lens: torch.Tensor,
        target_langs: torch.Tensor,
        max_steps: int,
    ) -> tuple[ARDecodingState, torch.Tensor]:
        """Encode the prompts once into a new KV cache with room for ``max_steps`` more steps.

        phones, phone_langs: LongTensor[B, P] (right-padded, ``phone_lens`` LongTensor[B]);
        prompt_codes: LongTensor[B, Tp] (right-padded, ``prompt_lens``; the first
        ``prompt_len % k`` frames are dropped so the prompt is whole groups); target_langs:
        LongTensor[B]. The acoustic segments are left-aligned to end together so every sequence
        writes its next step at the same cache index. Returns the state and the logits of the
        first step, FloatTensor[B, k, K+1].
        """
        k = self.config.frames_per_step
        batch_size, num_phones = phones.shape
        device = phones.device
        kept_groups = torch.div(prompt_lens, k, rounding_mode="floor")  # whole groups per prompt
        segment = int(kept_groups.max()) + 1 if batch_size else 1  # + BOS group
        groups = torch.full((batch_size, segment, k), self.eos_id, dtype=torch.long, device=device)
        for row in range(batch_size):
            count, length = int(kept_groups[row]), int(prompt_lens[row])
            kept = prompt_codes[row, length - count * k : length].view(count, k)
            groups[row, segment - count :] = kept
            groups[row, segment - count - 1] = self.bos_id
        code_positions, acoustic_valid = prompt_segment_layout(kept_groups, segment)  # [B, A] each
        phones, phone_langs, phone_valid = zero_phone_padding(phones, phone_lens, phone_langs)
        phone_positions = torch.arange(num_phones, device=device).expand(batch_size, -1)
        x = torch.cat(
            [self._embed_phones(phones, phone_langs, phone_positions), self._embed_groups(groups, target_langs, code_positions)],
            dim=1,
        )
        cache, hidden, length = self._prefill_cache(x, phone_valid, acoustic_valid, max_steps)
        positions = kept_groups + 1
        state = ARDecodingState(cache=cache, start=length, positions=positions, target_langs=target_langs,
                                position_terms=self._position_terms(positions, max_steps),
                                language_terms=self.language_embedding(target_langs))
        return state, self._logits(hidden[:, -1:])[:, 0]

    @torch.no_grad()
    def decode_step(self, state: ARDecodingState, tokens: torch.Tensor) -> torch.Tensor:
        """Feed the last sampled group tokens LongTensor[B, k]; return the next logits
        FloatTensor[B, k, K+1]. Writes one position into the cache in place. The input is
        :meth:`_embed_groups`'s (the same numbers), its language and position terms read from the
        state (computed once by prefill)."""
        assert state.language_terms is not None, "a state from prefill"
        x = self.code_embedding(tokens + self.slot_offsets).sum(dim=1) + state.language_terms  # [B, D]
        return self._logits(self._step_decoder(state, x))[:, 0]

    def _step_decoder(self, state: ARDecodingState, x: torch.Tensor) -> torch.Tensor:
        """The decoder's step for the new positions' embeddings x FloatTensor[B, D] (before
        ``code_positions``): scales them and adds the positions' terms of the state, writes the
        cache and advances the state -> hidden FloatTensor[B, 1, D]."""
        assert state.position_terms is not None, "a state from prefill"
        x = x * self.code_positions.input_scale + state.position_terms.index_select(0, state.positions)
        hidden = self.decoder.decode_step(x.unsqueeze(1), state.cache, state.start, state.rows)
        state.start += 1
        state.positions = state.positions + 1
        return hidden

    def _prefill_cache(
        self, x: torch.Tensor, phone_valid: torch.Tensor, acoustic_valid: torch.Tensor, max_steps: int
    ) -> tuple[KVCache, torch.Tensor, int]:
        """Run the embedded ``[phones ; acoustic segment]`` x FloatTensor[B, P+A, D] through the
        decoder into a new KV cache with room for ``max_steps`` more positions.

        phone_valid: BoolTensor[B, P], acoustic_valid: BoolTensor[B, A]. Returns the cache, the
        hidden states FloatTensor[B, P+A, D] and ``P + A`` (where the next step writes).
        """
        valid, mask = phones_then_frames_mask(phone_valid, acoustic_valid)
        length = valid.shape[1]
        dtype = getattr(self, "kv_cache_dtype", None) or x.dtype  # apply_precision(kv_cache=...) sets it
        cache = self.decoder.new_cache(x.shape[0], length + max_steps, dtype=dtype, device=x.device)
        cache.mark_valid(valid, 0)
        cache.key_valid[:, length:] = True  # generated steps are always real
        hidden = self.decoder(x, mask, cache=cache, start=0)
        return cache, hidden, length

    def _checked_batch(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``phones, phone_lens, phone_langs, codes, code_lens, code_langs`` of a training batch,
        checked (:class:`DataError` naming the key)."""
        phones, phone_lens, phone_langs = batch["phones"], batch["phone_lens"], batch["phone_langs"]
        codes, code_lens, code_langs = batch["codes"], batch["code_lens"], batch["code_langs"]
        _check_batch(self, phones, phone_lens, phone_langs, codes, code_lens, code_langs)
        return phones, phone_lens, phone_langs, codes, code_lens, code_langs

    # -- generation ----------------------------------------------------------------------------
    def _sampling_options(
        self, temperature: float | None, top_k: int | None, top_p: float | None
    ) -> tuple[float, int, float]:
        """``generate_batch``'s sampling arguments with the config's values where they are None."""
        config = self.config
        return (
            config.temperature if temperature is None else temperature,
            config.top_k if top_k is None else top_k,
            config.top_p if top_p is None else top_p,
        )

    def frame_limit(self, num_target_phones: int) -> int:
        """Most frames generated for a text of ``num_target_phones`` phones (the length guard)."""
        config = self.config
        return max(1, min(config.max_frames, math.ceil(config.max_frames_per_phone * num_target_phones) + config.max_frames_margin))

    @torch.no_grad()
    def generate_batch(
        self,
        phones: torch.Tensor,
        phone_lens: torch.Tensor,
        phone_langs: torch.Tensor,
        prompt_codes: torch.Tensor,
        prompt_lens: torch.Tensor,
        target_langs: torch.Tensor,
        *,
        num_target_phones: torch.Tensor | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
    ) -> ARGeneration:
        """Generate level-1 codes for B prompts at once (see :meth:`ARLanguageModel.generate_batch`).

        Each sequence stops at its own end token (or guard); under greedy decoding the outputs
        equal those of one-at-a-time generation.
        """
        k = self.config.frames_per_step
        temperature, top_k, top_p = self._sampling_options(temperature, top_k, top_p)
        _check_prompts(self, phones, phone_lens, phone_langs, prompt_codes, prompt_lens, target_langs)
        batch_size, device = phones.shape[0], phones.device
        if num_target_phones is None:
            num_target_phones = phone_lens
        limits = torch.tensor([self.frame_limit(int(n)) for n in num_target_phones], device=device)
        max_steps = math.ceil(int(limits.max()) / k)
        history = torch.zeros(batch_size, max_steps * k, dtype=torch.long, device=device)
        lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
        reasons = [""] * batch_size
        state, logits = self.prefill(phones, phone_lens, phone_langs, prompt_codes, prompt_lens, target_langs, max_steps)
        first_limit = int(limits.min())
        for step in range(max_steps):
            frames = step * k
            self._ban_long_runs(logits, history, frames)
            tokens = sample_tokens(
                logits.reshape(batch_size * k, -1), temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
            ).view(batch_size, k)
            history[:, frames : frames + k] = tokens
            frames += k
            # which sequences stop here: an end token, else the length guard, else a loop (each
            # guard checked only once it can fire, the lengths only in a step where one stops)
            is_eos = tokens == self.eos_id
            ended = ~finished & is_eos.any(1)
            stopped, too_long, looped = ended, None, None
            if frames >= first_limit:
                too_long = ~finished & ~ended & (frames >= limits)
                stopped = stopped | too_long
            if self._may_loop(history, frames):
                looped, loop_lengths = self._find_loops(history, frames)
                looped = looped & ~finished & ~stopped
                stopped = stopped | looped
            if bool(stopped.any()):
                first_eos = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full_like(lengths, k))
                lengths = torch.where(ended, frames - k + first_eos, lengths)
                if too_long is not None:
                    lengths = torch.where(too_long, limits, lengths)
                if looped is not None:
                    lengths = torch.where(looped, loop_lengths, lengths)
                for row, reason in ((ended, "eos"), (too_long, "max_length"), (looped, "loop")):
                    for index in ([] if row is None else row.nonzero().flatten().tolist()):
                        reasons[index] = reason
                finished = finished | stopped
                if bool(finished.all()):
                    break
                state.skip_finished(finished)
            logits = self.decode_step(state, tokens)
        codes = [history[row, : int(lengths[row])].clone() for row in range(batch_size)]
        return ARGeneration(codes=codes, stop_reasons=reasons)

    def _ban_long_runs(self, logits: torch.Tensor, history: torch.Tensor, frames: int) -> None:
        """In place: logits[b, :, tok] = -inf where the last ``repeat_run_limit`` frames are all tok."""
        limit = self.config.repeat_run_limit
        if limit <= 0 or frames < limit:
            return
        recent = history[:, frames - limit : frames]  # [B, limit]
        in_run = (recent == recent[:, -1:]).all(dim=1)
        if bool(in_run.any()):
            rows = in_run.nonzero().flatten()
            logits[rows, :, recent[rows, -1]] = float("-inf")

    def _may_loop(self, history: torch.Tensor, frames: int) -> bool:
        """Whether :meth:`_find_loops` could find a loop in the first ``frames`` of history
        LongTensor[B, T]: a repeated block of period p has frame[-1] == frame[-1-p], so one
        comparison with the ``loop_max_period - 1`` frames before the last rules out most steps."""
        repeats, longest = self.config.loop_min_repeats, self.config.loop_max_period
        if repeats <= 1 or frames < 2 * repeats:
            return False
        earlier = history[:, max(0, frames - 1 - longest) : frames - 2]  # periods longest..2
        return bool((earlier == history[:, frames - 1 : frames]).any())

    def _find_loops(self, history: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """BoolTensor[B] (the last frames are a 2..loop_max_period block repeated
        loop_min_repeats times) and LongTensor[B] (length that keeps one copy of the block)."""
        repeats, batch_size = self.config.loop_min_repeats, history.shape[0]
        looped = torch.zeros(batch_size, dtype=torch.bool, device=history.device)
        lengths = torch.zeros(batch_size, dtype=torch.long, device=history.device)
        if not self._may_loop(history, frames):
            return looped, lengths
        for period in range(2, self.config.loop_max_period + 1):
            span = period * repeats
            if span > frames:
                break
            window = history[:, frames - span : frames]
            periodic = (window[:, period:] == window[:, :-period]).all(dim=1) & ~looped
            lengths = torch.where(periodic, torch.full_like(lengths, frames - span + period), lengths)
            looped = looped | periodic
        return looped, lengths

    @torch.no_grad()
    def generate(
        self,
        phones: torch.Tensor,
        phone_langs: torch.Tensor,
        prompt_codes: torch.Tensor,
        target_lang: int,
        **sampling: Any,
    ) -> torch.Tensor:
        """One prompt (see :meth:`ARLanguageModel.generate`) -> new level-1 codes LongTensor[T]."""
        num_target_phones = sampling.pop("num_target_phones", None)
        if phones.dim() != 1 or prompt_codes.dim() != 1:
            raise DataError(
                "valle_ar.generate: phones [P] and prompt_codes [Tp] must be 1-D, got "
                f"{tuple(phones.shape)} and {tuple(prompt_codes.shape)}."
            )
        device = phones.device
        result = self.generate_batch(
            phones.unsqueeze(0),
            torch.tensor([phones.shape[0]], device=device),
            phone_langs.unsqueeze(0),
            prompt_codes.unsqueeze(0),
            torch.tensor([prompt_codes.shape[0]], device=device),
            torch.tensor([int(target_lang)], device=device),
            num_target_phones=None if num_target_phones is None else torch.tensor([int(num_target_phones)]),
            **sampling,
        )
        return result.codes[0]


def _check_batch(
    model: ValleAR,
    phones: torch.Tensor,
    phone_lens: torch.Tensor,
    phone_langs: torch.Tensor,
    codes: torch.Tensor,
    code_lens: torch.Tensor,
    code_langs: torch.Tensor,
) -> None:
    """Shapes and id ranges of a training batch (DataError naming the key)."""
    if phones.dim() != 2 or phone_langs.shape != phones.shape or codes.dim() != 2:
        raise DataError(
            f"valle_ar: expected phones/phone_langs [B, P] and codes [B, T], got {tuple(phones.shape)}, "
            f"{tuple(phone_langs.shape)}, {tuple(codes.shape)}."
        )
    batch_size = phones.shape[0]
    vectors = (phone_lens, code_lens, code_langs)
    if codes.shape[0] != batch_size or any(vector.shape != (batch_size,) for vector in vectors):
        raise DataError("valle_ar: phone_lens, code_lens, code_langs must be [B] and codes [B, T] with the B of phones.")
    if bool((phone_lens < 1).any()) or int(phone_lens.max()) > phones.shape[1] or int(code_lens.max()) > codes.shape[1]:
        raise DataError("valle_ar: every item needs >= 1 phone and lengths within the padded tensors.")
    phone_valid = lengths_to_mask(phone_lens, phones.shape[1])
    check_id_range("valle_ar", "phones", phones, phone_valid, model.num_phones)
    check_id_range("valle_ar", "phone_langs", phone_langs, phone_valid, model.num_languages)
    check_id_range("valle_ar", "codes", codes, lengths_to_mask(code_lens, codes.shape[1]), model.codebook_size)
    check_id_range("valle_ar", "code_langs", code_langs, torch.ones_like(code_langs, dtype=torch.bool), model.num_languages)


def _check_prompts(
    model: ValleAR,
    phones: torch.Tensor,
    phone_lens: torch.Tensor,
    phone_langs: torch.Tensor,
    prompt_codes: torch.Tensor,
    prompt_lens: torch.Tensor,
    target_langs: torch.Tensor,
) -> None:
    """Same checks for generation inputs (prompt codes may be empty)."""
    _check_batch(model, phones, phone_lens, phone_langs, prompt_codes, prompt_lens, target_langs)
