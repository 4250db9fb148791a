"""Phone-synchronous AR codec LM (``aligned_ar``): VALL-E X's AR, told which phone it is speaking.

Same sequence as :mod:`.valle_ar` (phones, then ``[BOS, prompt frames, target frames]``; one
frame per step), plus explicit alignment from phone durations (:mod:`speechkit.align`):

* the input embedding of each *target* frame also gets the embedding of its phone (token +
  language) and of its position inside the phone (frames since the phone started, clipped);
  prompt frames get none, so decoding needs no aligner for the prompt;
* output row ``m`` (hidden state at the input position of frame ``m - 1``; the last prompt frame
  or BOS for the first target frame) gives
  (a) an *advance* logit: does frame ``m`` start the next phone, or, after the last phone, end
  the utterance (end-of-sentence)? - computed from the hidden state fused with the current
  phone; there is no decision for the first target frame, which always starts the first target
  phone;
  (b) code logits for frame ``m`` from the hidden state fused (late fusion) with frame ``m``'s
  phone - teacher-forced in training, chosen by (a) when decoding - and its position in the
  phone. The phone enters the fusion as its contextual encoding (the decoder's output at that
  phone position) projected, plus a position embedding, then an MLP head.
* loss = CE(codes) + ``advance_loss_weight`` * BCE(advance).

Decoding keeps a pointer on the current target phone: each step decides advance (threshold on
the per-frame probability; with ``advance_survival`` a threshold on the probability of having
stayed in the phone so far, 0.5 = the median of the model's duration distribution; or sampled
with ``sample_advance``), moves the pointer, then predicts the code conditioned on that
phone; advancing past the last phone ends the sequence (``"eos"``). Guards: a phone is left after
``max_frames_in_phone`` frames, and the absolute length bound of :class:`.valle_ar.ValleAR`.
``ARGeneration.frame_phones`` returns the decided frame -> target-phone alignment.

Batch key (see :mod:`speechkit.interfaces.lm`): ``durations`` LongTensor[B, P] aligned with
``phones`` - frames of each phone in the target part, 0 for prompt-transcript phones; they sum
to ``code_lens - prompt_lens``. Without it the target frames are spread evenly over all phones
(a fallback for contract checks, not for training).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from speechkit.errors import ConfigError, DataError
from speechkit.interfaces.lm import ARGeneration
from speechkit.nn import lengths_to_mask, phones_then_frames_mask, prompt_segment_layout, sample_tokens, zero_phone_padding
from speechkit.plugins.ar_lm.valle_ar import ARDecodingState, ValleAR, _check_prompts
from speechkit.registry import AR_LM

#: log-probability given to impossible classes in the marginal logits (finite, so comparisons work)
IMPOSSIBLE = -1e4


@dataclasses.dataclass
class AlignedDecodingState(ARDecodingState):
    """Between decoding steps: what :class:`ARDecodingState` holds (the KV cache and write index,
    acoustic positions LongTensor[B], target languages LongTensor[B]), plus the decoder's phone
    encodings FloatTensor[B, P, D] and, computed once by :meth:`AlignedAR.prefill` for the steps,
    each phone's input term FloatTensor[B * P, D] (its embedding, its language's and the target
    language's; ``phone_offsets`` LongTensor[B], where each sequence's phones start in it)."""

    phone_states: torch.Tensor
    phone_inputs: torch.Tensor | None = None
    phone_offsets: torch.Tensor | None = None


def positions_in_phone(frame_phones: torch.Tensor) -> torch.Tensor:
    """frame_phones: LongTensor[B, T] -> LongTensor[B, T], frames since the current run of equal
    phone indices began (0 on each phone's first frame)."""
    index = torch.arange(frame_phones.shape[1], device=frame_phones.device).expand_as(frame_phones)
    starts = torch.ones_like(frame_phones, dtype=torch.bool)
    starts[:, 1:] = frame_phones[:, 1:] != frame_phones[:, :-1]
    run_start = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=1).values
    return index - run_start


@AR_LM.register("aligned_ar")
class AlignedAR(ValleAR):
    """Phone-synchronous VALL-E X AR (see the module docstring); one frame per step.

    Context as :class:`~speechkit.plugins.ar_lm.valle_ar.ValleAR`. Training batches need
    ``durations`` (:attr:`uses_durations`); generation needs ``num_target_phones`` whenever the
    phones start with the prompt's transcript.
    """

    #: training data must carry ``durations`` (dump/<set>/durations, see speechkit.align)
    uses_durations: ClassVar[bool] = True

    @dataclasses.dataclass
    class Config(ValleAR.Config):
        """Options of :class:`ValleAR.Config` (``frames_per_step`` must stay 1), plus:

        Attributes:
            max_position_in_phone: size of the position-in-phone embeddings (longer phones clip).
            max_frames_in_phone: decoding leaves a phone after this many frames (a guard).
            advance_loss_weight: weight of the advance BCE beside the code CE.
            advance_threshold: advance when P(advance) exceeds this (unless sampled, or
                ``advance_survival`` is set). The per-frame probability is a hazard (about
                1/duration), so this rule stretches phones: it leaves a phone only once the
                model is sure it has ended.
            advance_survival: if > 0, advance once the probability of still being in the phone
                (the product of 1 - P(advance) over its frames) falls below this; 0.5 gives the
                median duration of the model's distribution, deterministically.
            sample_advance: sample the advance decision (Bernoulli) when sampling codes.
        """

        max_position_in_phone: int = 32
        max_frames_in_phone: int = 60
        advance_loss_weight: float = 1.0
        advance_threshold: float = 0.5
        advance_survival: float = 0.0
        sample_advance: bool = False

    def __init__(self, config: "AlignedAR.Config | None" = None, **context: Any) -> None:
        super().__init__(config, **context)
        config = self.config
        if config.frames_per_step != 1:
            raise ConfigError(f"ar_lm 'aligned_ar' reads one frame per step; set frames_per_step: 1 (got {config.frames_per_step}).")
        if config.max_position_in_phone < 1 or config.max_frames_in_phone < 1:
            raise ConfigError("ar_lm 'aligned_ar': max_position_in_phone and max_frames_in_phone must be >= 1.")
        if not 0.0 <= config.advance_survival < 1.0:
            raise ConfigError(f"ar_lm 'aligned_ar': advance_survival must lie in [0, 1), got {config.advance_survival}.")
        del self.head  # replaced by the phone-fused heads below
        d = config.d_model
        self.input_position_embedding = nn.Embedding(config.max_position_in_phone, d)
        self.output_position_embedding = nn.Embedding(config.max_position_in_phone, d)
        self.phone_state_projection = nn.Linear(d, d)
        self.code_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, self.codebook_size))
        self.advance_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))

    # -- pieces ------------------------------------------------------------------------------
    def _clip(self, positions: torch.Tensor) -> torch.Tensor:
        return positions.clamp(0, self.config.max_position_in_phone - 1)

    def _embed_frames(
        self,
        tokens: torch.Tensor,
        langs: torch.Tensor,
        positions: torch.Tensor,
        phone_ids: torch.Tensor | None = None,
        phone_langs: torch.Tensor | None = None,
        phone_positions: torch.Tensor | None = None,
        has_phone: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """tokens (codes, BOS or EOS), positions: LongTensor[B, N]; langs: LongTensor[B]; optional
        phone conditioning per frame (phone token ids, their languages, position in phone:
        LongTensor[B, N]; has_phone: BoolTensor[B, N]) -> FloatTensor[B, N, D]."""
        x = self.code_embedding(tokens) + self.language_embedding(langs).unsqueeze(1)
        if phone_ids is not None:
            phone = (
                self.phone_embedding(phone_ids)
                + self.phone_language_embedding(phone_langs)
                + self.input_position_embedding(self._clip(phone_positions))
            )
            x = x + (phone if has_phone is None else phone * has_phone.unsqueeze(-1))  # None: every frame has one
        return self.code_positions(x, positions)

    def _fuse(self, hidden: torch.Tensor, phone_state: torch.Tensor, position: torch.Tensor, has_phone: torch.Tensor) -> torch.Tensor:
        """Late fusion: hidden, phone_state FloatTensor[..., D], position LongTensor[...], has_phone
        BoolTensor[...] -> FloatTensor[..., D]."""
        phone = self._phone_term(self.phone_state_projection(phone_state), position)
        return hidden + phone * has_phone.unsqueeze(-1)

    def _phone_term(self, projected: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """What late fusion adds for a phone: its projected state FloatTensor[..., D] plus the
        embedding of the frame's position in the phone LongTensor[...]."""
        return projected + self.output_position_embedding(self._clip(position))

    def _fuse_step(self, hidden: torch.Tensor, projected: torch.Tensor, index: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """:meth:`_fuse` for one decoding step of every sequence, each with its phone: hidden
        FloatTensor[B, D], projected FloatTensor[B * P, D] (``phone_state_projection`` of all phone
        states, computed once per generation, sequences one after the other), index (of each
        sequence's phone in ``projected``) and position LongTensor[B] -> FloatTensor[B, D]."""
        return hidden + self._phone_term(projected.index_select(0, index), position)

    @staticmethod
    def _gather_phone(phone_states: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """phone_states FloatTensor[B, P, D], index LongTensor[B, N] (negative = none) -> FloatTensor[B, N, D]."""
        safe = index.clamp(0, phone_states.shape[1] - 1)
        return phone_states.gather(1, safe.unsqueeze(-1).expand(-1, -1, phone_states.shape[2]))

    def frame_phones(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Phone index (into ``phones``) of every target frame of ``codes``: LongTensor[B, T], -1 on
        prompt frames and padding. From ``batch["durations"]``, else spread evenly over all phones."""
        codes, code_lens, phone_lens = batch["codes"], batch["code_lens"], batch["phone_lens"]
        prompt_lens = batch.get("prompt_lens", torch.zeros_like(code_lens))
        result = torch.full_like(codes, -1)
        durations = batch.get("durations")
        if durations is not None and durations.shape != batch["phones"].shape:
            raise DataError(f"aligned_ar: durations must be [B, P] like phones, got {tuple(durations.shape)}.")
        for row in range(codes.shape[0]):
            start, end, num_phones = int(prompt_lens[row]), int(code_lens[row]), int(phone_lens[row])
            if durations is None:
                frames = torch.arange(end - start, device=codes.device)
                path = torch.div(frames * num_phones, max(end - start, 1), rounding_mode="floor")
            else:
                counts = durations[row, :num_phones]
                if bool((counts < 0).any()) or int(counts.sum()) != end - start:
                    raise DataError(
                        f"aligned_ar: durations of batch item {row} sum to {int(counts.sum())} but it has "
                        f"{end - start} target frames (code_lens - prompt_lens); re-run the alignment step."
                    )
                path = torch.repeat_interleave(torch.arange(num_phones, device=codes.device), counts)
            result[row, start:end] = path
        return result

    # -- training ----------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Teacher-forced loss (see the module docstring and :meth:`ARLanguageModel.forward`).

        Returns ``loss`` (code CE + weighted advance BCE), ``code_loss``, ``advance_loss``,
        ``accuracy`` (top-1 codes given the true phone), ``advance_accuracy`` and ``logits``
        FloatTensor[B, T+1, K+1]: the model's marginal log-probabilities of frame ``m`` of
        ``codes + [EOS]`` given the true phone of frame ``m - 1`` (mixing staying in the phone
        and advancing; EOS only after the last phone). In training mode ``logits`` carry no gradient.
        """
        phones, phone_lens, phone_langs, codes, code_lens, code_langs = self._checked_batch(batch)
        batch_size, num_phones = phones.shape
        num_frames, device = codes.shape[1], codes.device
        prompt_lens = batch.get("prompt_lens", torch.zeros_like(code_lens))
        phones, phone_langs, phone_valid = zero_phone_padding(phones, phone_lens, phone_langs)
        frame_phones = self.frame_phones({**batch, "prompt_lens": prompt_lens})  # [B, T]
        frame_positions = positions_in_phone(frame_phones)
        none = torch.full((batch_size, 1), -1, dtype=torch.long, device=device)
        current = torch.cat([none, frame_phones], dim=1)  # [B, T+1]: phone of frame m-1 (input side)
        current_pos = torch.cat([torch.zeros_like(none), frame_positions], dim=1)
        following = torch.cat([frame_phones, none], dim=1)  # [B, T+1]: phone of frame m (output side)
        following_pos = torch.cat([frame_positions, torch.zeros_like(none)], dim=1)
        code_valid = lengths_to_mask(code_lens, num_frames)
        tokens = torch.cat([torch.full_like(none, self.bos_id), codes.masked_fill(~code_valid, self.eos_id)], dim=1)
        step_valid = lengths_to_mask(code_lens + 1, num_frames + 1)
        has_current = current >= 0
        x = torch.cat(
            [
                self._embed_phones(phones, phone_langs, torch.arange(num_phones, device=device).expand(batch_size, -1)),
                self._embed_frames(
                    tokens, code_langs, torch.arange(num_frames + 1, device=device).expand(batch_size, -1),
                    phones.gather(1, current.clamp(min=0)), phone_langs.gather(1, current.clamp(min=0)), current_pos, has_current,
                ),
            ],
            dim=1,
        )  # [B, P+T+1, D]
        _, mask = phones_then_frames_mask(phone_valid, step_valid)
        hidden = self.decoder(x, mask)
        phone_states, acoustic = hidden[:, :num_phones], hidden[:, num_phones:]  # [B, P, D], [B, T+1, D]
        has_following = following >= 0
        code_logits = self.code_head(
            self._fuse(acoustic, self._gather_phone(phone_states, following), following_pos, has_following)
        )  # [B, T+1, K]
        advance_logits = self.advance_head(
            self._fuse(acoustic, self._gather_phone(phone_states, current), current_pos, has_current)
        ).squeeze(-1)  # [B, T+1]
        rows = torch.arange(num_frames + 1, device=device).unsqueeze(0)
        at_end = rows == code_lens.unsqueeze(1)
        advance_counted = has_current & (rows <= code_lens.unsqueeze(1))
        advance_targets = (at_end | (following != current)).float()
        code_targets = torch.cat([codes, torch.zeros_like(none)], dim=1)
        code_loss = F.cross_entropy(code_logits[has_following].float(), code_targets[has_following])
        if bool(advance_counted.any()):
            advance_loss = F.binary_cross_entropy_with_logits(
                advance_logits[advance_counted].float(), advance_targets[advance_counted]
            )
            advance_accuracy = ((advance_logits[advance_counted] > 0).float() == advance_targets[advance_counted]).float().mean()
        else:
            advance_loss = advance_accuracy = advance_logits.sum() * 0.0
        accuracy = (code_logits[has_following].argmax(-1) == code_targets[has_following]).float().mean()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.training):
            logits = self._marginal_logits(
                acoustic, phone_states, code_logits, advance_logits, current, current_pos, phone_lens
            )
        return {
            "loss": code_loss + self.config.advance_loss_weight * advance_loss,
            "code_loss": code_loss.detach(),
            "advance_loss": advance_loss.detach(),
            "accuracy": accuracy.detach(),
            "advance_accuracy": advance_accuracy.detach(),
            "logits": logits,
        }

    def _marginal_logits(
        self,
        acoustic: torch.Tensor,
        phone_states: torch.Tensor,
        code_logits: torch.Tensor,
        advance_logits: torch.Tensor,
        current: torch.Tensor,
        current_pos: torch.Tensor,
        phone_lens: torch.Tensor,
    ) -> torch.Tensor:
        """FloatTensor[B, T+1, K+1] log-probabilities over codes + EOS for every row (see :meth:`forward`).

        acoustic FloatTensor[B, T+1, D]; code_logits FloatTensor[B, T+1, K] (teacher-forced phone,
        used where there is no current phone); advance_logits, current, current_pos: [B, T+1].
        """
        has_current = current >= 0
        last = (phone_lens - 1).unsqueeze(1)  # [B, 1]
        is_last = current == last
        stay = self.code_head(
            self._fuse(acoustic, self._gather_phone(phone_states, current), current_pos + 1, has_current)
        ).log_softmax(-1)
        following = torch.minimum(current + 1, last)
        advance = self.code_head(
            self._fuse(acoustic, self._gather_phone(phone_states, following), torch.zeros_like(current), has_current)
        ).log_softmax(-1)
        log_advance = F.logsigmoid(advance_logits).unsqueeze(-1)  # [B, T+1, 1]
        log_stay = F.logsigmoid(-advance_logits).unsqueeze(-1)
        mixed = torch.where(is_last.unsqueeze(-1), log_stay + stay, torch.logaddexp(log_stay + stay, log_advance + advance))
        codes_part = torch.where(has_current.unsqueeze(-1), mixed, code_logits.log_softmax(-1))
        eos = torch.where(has_current & is_last, log_advance.squeeze(-1), torch.full_like(advance_logits, IMPOSSIBLE))
        return torch.cat([codes_part, eos.unsqueeze(-1)], dim=-1)

    # -- incremental decoding ----------------------------------------------------------------
    @torch.no_grad()
    def prefill(  # type: ignore[override]
        self,
        phones: torch.Tensor,
        phone_lens: torch.Tensor,
        phone_langs: torch.Tensor,
        prompt_codes: torch.Tensor,
        prompt_lens: torch.Tensor,
        target_langs: torch.Tensor,
        max_steps: int,
    ) -> tuple[AlignedDecodingState, torch.Tensor]:
        """Encode phones and prompts once into a KV cache with room for ``max_steps`` frames.

        Acoustic segments ``[BOS, prompt]`` are left-padded to end together (no phone
        conditioning on prompt frames). Returns the state and the last hidden state
        FloatTensor[B, D] (it predicts the first target frame).
        """
        batch_size, num_phones = phones.shape
        device = phones.device
        segment = int(prompt_lens.max()) + 1 if batch_size else 1
        tokens = torch.full((batch_size, segment), self.eos_id, dtype=torch.long, device=device)
        for row in range(batch_size):
            length = int(prompt_lens[row])
            tokens[row, segment - length :] = prompt_codes[row, :length]
            tokens[row, segment - length - 1] = self.bos_id
        code_positions, acoustic_valid = prompt_segment_layout(prompt_lens, segment)  # [B, A] each
        phones, phone_langs, phone_valid = zero_phone_padding(phones, phone_lens, phone_langs)
        x = torch.cat(
            [
                self._embed_phones(phones, phone_langs, torch.arange(num_phones, device=device).expand(batch_size, -1)),
                self._embed_frames(tokens, target_langs, code_positions),
            ],
            dim=1,
        )
        cache, hidden, length = self._prefill_cache(x, phone_valid, acoustic_valid, max_steps)
        phone_inputs = (self.phone_embedding(phones) + self.phone_language_embedding(phone_langs)
                        + self.language_embedding(target_langs).unsqueeze(1))  # [B, P, D]
        positions = prompt_lens + 1
        state = AlignedDecodingState(
            cache=cache, start=length, positions=positions, target_langs=target_langs, phone_states=hidden[:, :num_phones],
            phone_inputs=phone_inputs.flatten(0, 1), phone_offsets=torch.arange(batch_size, device=device) * num_phones,
            position_terms=self._position_terms(positions, max_steps),
        )
        return state, hidden[:, -1]

    @torch.no_grad()
    def decode_step(  # type: ignore[override]
        self,
        state: AlignedDecodingState,
        tokens: torch.Tensor,
        pointer: torch.Tensor,
        phone_positions: torch.Tensor,
    ) -> torch.Tensor:
        """Feed the last frame's code LongTensor[B] with its phone (index into the prefilled
        ``phones``) and its position in that phone (LongTensor[B] each); returns the next hidden
        state FloatTensor[B, D]. The input is :meth:`_embed_frames`'s, from the terms prefill
        computed once (equal up to float rounding: the same terms summed in another order)."""
        assert state.phone_inputs is not None and state.phone_offsets is not None, "a state from prefill"
        x = (self.code_embedding(tokens) + state.phone_inputs.index_select(0, state.phone_offsets + pointer)
             + self.input_position_embedding(self._clip(phone_positions)))
        return self._step_decoder(state, x)[:, 0]

    # -- generation ----------------------------------------------------------------------------
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
        """Phone-synchronous generation for B prompts (see :meth:`ARLanguageModel.generate_batch`).

        The target text is the last ``num_target_phones`` of each row's phones (default: all).
        Returns codes, stop reasons (``"eos"`` = advanced past the last phone, ``"max_length"``)
        and ``frame_phones``: per prompt, LongTensor[T_b] index of each frame's phone among the
        target phones (0 = first target phone).
        """
        config = self.config
        temperature, top_k, top_p = self._sampling_options(temperature, top_k, top_p)
        greedy = temperature <= 0 or top_k == 1
        _check_prompts(self, phones, phone_lens, phone_langs, prompt_codes, prompt_lens, target_langs)
        batch_size, device = phones.shape[0], phones.device
        num_target_phones = phone_lens.clone() if num_target_phones is None else num_target_phones.to(device)
        if bool((num_target_phones < 1).any()) or bool((num_target_phones > phone_lens).any()):
            raise DataError("aligned_ar: num_target_phones must lie in [1, phone_lens] for every prompt.")
        first, last = phone_lens - num_target_phones, phone_lens - 1
        limits = torch.tensor([self.frame_limit(int(n)) for n in num_target_phones], device=device)
        max_steps = int(limits.max())
        history = torch.zeros(batch_size, max_steps, dtype=torch.long, device=device)
        history_phones = torch.zeros_like(history)
        lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
        reasons = [""] * batch_size
        state, hidden = self.prefill(phones, phone_lens, phone_langs, prompt_codes, prompt_lens, target_langs, max_steps)
        pointer, in_phone = first.clone(), torch.zeros_like(first)
        survival = torch.ones(batch_size, device=device)  # P(still in the current phone) so far
        projected = self.phone_state_projection(state.phone_states).flatten(0, 1)  # [B * P, D], once: the steps gather rows
        phone_index = state.phone_offsets + pointer  # of each sequence's current phone in projected
        first_limit = int(limits.min())
        for step in range(max_steps):
            if step > 0:
                advance_logit = self.advance_head(self._fuse_step(hidden, projected, phone_index, in_phone)).squeeze(-1)  # [B]
                probability = torch.sigmoid(advance_logit.float())
                if config.sample_advance and not greedy:
                    advance = torch.bernoulli(probability, generator=generator).bool()
                elif config.advance_survival > 0:
                    survival = survival * (1.0 - probability)
                    advance = survival < config.advance_survival
                else:
                    advance = probability > config.advance_threshold
                advance = advance | (in_phone + 1 >= config.max_frames_in_phone)
                ended = ~finished & advance & (pointer == last)
                if bool(ended.any()):  # the bookkeeping only in a step where a sequence ends
                    lengths = torch.where(ended, torch.full_like(lengths, step), lengths)
                    for index in ended.nonzero().flatten().tolist():
                        reasons[index] = "eos"
                    finished = finished | ended
                    if bool(finished.all()):
                        break
                    state.skip_finished(finished)
                pointer = torch.minimum(pointer + advance.long(), last)
                phone_index = state.phone_offsets + pointer
                in_phone = (in_phone + 1).masked_fill_(advance, 0)
                if config.advance_survival > 0:
                    survival = survival.masked_fill(advance, 1.0)
            logits = self.code_head(self._fuse_step(hidden, projected, phone_index, in_phone)).unsqueeze(1)  # [B, 1, K]
            self._ban_long_runs(logits, history, step)
            tokens = sample_tokens(logits[:, 0], temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
            history[:, step] = tokens
            history_phones[:, step] = pointer - first
            too_long = ~finished & (step + 1 >= limits) if step + 1 >= first_limit else None
            if too_long is not None and bool(too_long.any()):
                lengths = torch.where(too_long, limits, lengths)
                for index in too_long.nonzero().flatten().tolist():
                    reasons[index] = "max_length"
                finished = finished | too_long
                if bool(finished.all()):
                    break
                state.skip_finished(finished)
            hidden = self.decode_step(state, tokens, pointer, in_phone)
        codes = [history[row, : int(lengths[row])].clone() for row in range(batch_size)]
        alignment = [history_phones[row, : int(lengths[row])].clone() for row in range(batch_size)]
        return ARGeneration(codes=codes, stop_reasons=reasons, frame_phones=alignment)
