"""``transformer_st``: one model for speech recognition (ASR) and speech translation (ST) to phones.

Speech path: 80-dim log-mel fbank (16 kHz, 10 ms hop, utterance mean/variance norm) ->
convolutional subsampling (``2 ** subsampling_layers`` x) -> Transformer encoder (sinusoidal
positions) -> a CTC head over the *source* phones (blank = id 0 = ``<pad>``) and an attention
decoder emitting *target* phones after a target-language start token (``<2en>``/``<2zh>``, a
language embedding). ASR is translation into the source language, so one model does both.

Text path (the paper's MT pre-training task): source phone ids -> phone embedding -> the same
encoder -> the same decoder. A batch can mix both kinds of items (``feature_lens == 0`` marks a
text-only item).

Objective: ``ctc_weight * CTC(source phones) + (1 - ctc_weight) * CE(target phones + EOS)`` with
label smoothing; both losses are averaged per token. Decoding: CTC greedy for :meth:`recognize`,
attention greedy or beam search for :meth:`translate`, batched over utterances.

Phone ids index the pipeline's phone table (``speechkit.text.phone_table.PhoneTable``, context
``num_phones``); the string API (``recognize``/``translate`` -> :class:`Phone`) needs the table's
``token_list`` as context. Deviation from the paper (SpeechUT): a 2-layer Conv2d fbank front end
instead of the 7-layer waveform CNN, absolute sinusoidal positions instead of relative position
bias, and the phone encoder shares the speech encoder's layers.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from speechkit.audio.fbank import Fbank, FbankSpec
from speechkit.config import require_minimums
from speechkit.data.collate import pad_sequences
from speechkit.errors import AudioError, ConfigError, DataError
from speechkit.interfaces.frontend import Phone, PhoneSequence
from speechkit.interfaces.st import STFrontend
from speechkit.nn import SinusoidalPositionalEncoding, TransformerStack, key_padding_mask, lengths_to_mask
from speechkit.nn.ctc import alignment_durations, ctc_forced_align, ctc_greedy_decode, rescale_durations
from speechkit.nn.checks import check_attention_width, check_dropout, require_int_context
from speechkit.plugins.st_frontend.decoder import PhoneDecoder
from speechkit.plugins.st_frontend.search import beam_search, greedy_search
from speechkit.plugins.st_frontend.subsampling import ConvSubsampling
from speechkit.registry import ST_FRONTEND
from speechkit.text.languages import language_id

BLANK_ID = 0  # the phone table's <pad>: never a target, so it doubles as the CTC blank
IGNORE = -100  # cross-entropy target of padded decoder positions
BATCH_KEYS = ("source_phones", "source_lens", "target_phones", "target_lens", "target_langs")


@ST_FRONTEND.register("transformer_st")
class TransformerST(nn.Module, STFrontend):
    """Joint CTC / attention speech recogniser and translator (see the module docstring).

    Context: ``num_phones`` (phone table size incl. specials, ``<pad>`` = 0), ``num_languages``
    (language-ID table size, :mod:`speechkit.text.languages`), optional ``token_list``
    (``list[str]``, the phone table's tokens; required by the string API; implies ``num_phones``).
    """

    @dataclasses.dataclass
    class Config:
        """Options of ``transformer_st``.

        Attributes:
            d_model, num_heads, ffn_dim, dropout: Transformer sizes (paper: 768, 12, 3072).
            encoder_layers, decoder_layers: layers of the shared encoder and of the decoder
                (paper: 6 speech-encoder + 6 phone-encoder + 6 decoder layers).
            conv_channels, subsampling_layers: the Conv2d front end (stride 2 each: 2 -> 4x, 25 Hz).
            num_mels, sample_rate: fbank layout (input audio at other rates is resampled).
            ctc_weight: weight of the CTC loss (the paper: 0.2); the decoder loss gets the rest.
            label_smoothing: of the decoder cross-entropy.
            beam_size: default beam for :meth:`translate` (1 = greedy).
            length_penalty: beam hypotheses are ranked by ``log P / length ** length_penalty``.
            max_length_ratio, max_length_margin: decoding speech stops after
                ``ceil(ratio * encoder frames) + margin`` phones when no end token came (1.0 =
                25 phones/s with the default 4x subsampling).
            max_text_length_ratio: the same ratio for MT (per source phone).
        """

        d_model: int = 256
        num_heads: int = 4
        ffn_dim: int = 1024
        dropout: float = 0.1
        encoder_layers: int = 4
        decoder_layers: int = 2
        conv_channels: int = 128
        subsampling_layers: int = 2
        num_mels: int = 80
        sample_rate: int = 16000
        ctc_weight: float = 0.3
        label_smoothing: float = 0.1
        beam_size: int = 4
        length_penalty: float = 1.0
        max_length_ratio: float = 1.0
        max_length_margin: int = 10
        max_text_length_ratio: float = 2.0

    def __init__(
        self,
        config: "TransformerST.Config | None" = None,
        *,
        num_phones: int | None = None,
        num_languages: int | None = None,
        token_list: Sequence[str] | None = None,
        **context: Any,
    ) -> None:
        nn.Module.__init__(self)
        STFrontend.__init__(self, config)
        config = self.config
        if token_list is not None:
            token_list = list(token_list)
            if num_phones is None:
                num_phones = len(token_list)
            elif num_phones != len(token_list):
                raise ConfigError(f"st_frontend 'transformer_st': num_phones={num_phones} but token_list has "
                                  f"{len(token_list)} tokens; pass the same phone table for both.")
        require_int_context("st_frontend 'transformer_st'", 2, num_phones=num_phones, num_languages=num_languages)
        _validate_config(config)
        self.num_phones, self.num_languages = num_phones, num_languages
        self.token_list = token_list
        self.fbank = Fbank(FbankSpec(sample_rate=config.sample_rate, num_mels=config.num_mels))
        d = config.d_model
        self.subsampling = ConvSubsampling(config.num_mels, d, channels=config.conv_channels,
                                           num_layers=config.subsampling_layers)
        self.speech_positions = SinusoidalPositionalEncoding(d, dropout=config.dropout)
        self.text_embedding = nn.Embedding(num_phones, d, padding_idx=0)
        self.text_positions = SinusoidalPositionalEncoding(d, dropout=config.dropout)
        self.encoder = TransformerStack(num_layers=config.encoder_layers, d_model=d, num_heads=config.num_heads,
                                        ffn_dim=config.ffn_dim, dropout=config.dropout)
        self.ctc_head = nn.Linear(d, num_phones)
        self.decoder = PhoneDecoder(num_phones=num_phones, num_languages=num_languages, d_model=d,
                                    num_heads=config.num_heads, num_layers=config.decoder_layers,
                                    ffn_dim=config.ffn_dim, dropout=config.dropout)

    @property
    def eos_id(self) -> int:
        """Decoder class of end-of-sentence (``num_phones``)."""
        return self.decoder.eos_id

    @property
    def encoder_frame_rate(self) -> float:
        """Encoder (and CTC) frames per second (25 Hz with the defaults)."""
        return self.fbank.spec.frame_rate / self.subsampling.factor

    # -- encoders ----------------------------------------------------------------------------
    def _run_encoder(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: FloatTensor[B, S, D] (positions added), lengths: LongTensor[B] -> (FloatTensor[B, S, D], lengths)."""
        valid = lengths_to_mask(lengths, x.shape[1])
        return self.encoder(x, key_padding_mask(valid)), lengths

    def encode_speech(self, features: torch.Tensor, feature_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features: FloatTensor[B, T, F], feature_lens: LongTensor[B] -> (FloatTensor[B, S, D],
        LongTensor[B] encoder lengths), ``S = T // 4`` roughly.

        Raises:
            AudioError: an utterance shorter than the subsampling's receptive field.
        """
        if features.dim() != 3 or features.shape[-1] != self.config.num_mels:
            raise DataError(f"features must be FloatTensor[B, T, {self.config.num_mels}], got {tuple(features.shape)}.")
        too_short = feature_lens < self.subsampling.min_input_frames
        if bool(too_short.any()):
            raise AudioError(
                f"{int(too_short.sum())} utterance(s) have fewer than {self.subsampling.min_input_frames} feature frames "
                f"({self.subsampling.min_input_frames * 1000 / self.fbank.spec.frame_rate:.0f} ms), too short to recognise."
            )
        x = self.subsampling(features)  # [B, S, D]
        lengths = self.subsampling.output_lengths(feature_lens)
        x = self.speech_positions(x, torch.arange(x.shape[1], device=x.device))
        return self._run_encoder(x, lengths)

    def encode_text(self, phones: torch.Tensor, phone_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """phones: LongTensor[B, P] (right-padded with 0), phone_lens: LongTensor[B] ->
        (FloatTensor[B, P, D], phone_lens). The MT input path."""
        if bool((phone_lens < 1).any()):
            raise DataError("a text-only (MT) item needs at least one source phone.")
        x = self.text_positions(self.text_embedding(phones), torch.arange(phones.shape[1], device=phones.device))
        return self._run_encoder(x, phone_lens)

    def _encode_batch(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Encode a mixed batch -> memory FloatTensor[B, S, D], memory_lens LongTensor[B],
        is_speech BoolTensor[B], and the speech rows' own (memory, lengths) for the CTC loss."""
        source, source_lens = batch["source_phones"], batch["source_lens"]
        size = source.shape[0]
        if "features" in batch:
            is_speech = batch["feature_lens"] > 0
        else:
            is_speech = torch.zeros(size, dtype=torch.bool, device=source.device)
        parts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        if bool(is_speech.any()):
            parts["speech"] = self.encode_speech(batch["features"][is_speech], batch["feature_lens"][is_speech])
        if not bool(is_speech.all()):
            parts["text"] = self.encode_text(source[~is_speech], source_lens[~is_speech])
        if len(parts) == 1:  # one kind of item: no scatter needed
            memory, memory_lens = next(iter(parts.values()))
            return memory, memory_lens, is_speech, parts
        length = max(part[0].shape[1] for part in parts.values())
        first = parts["speech"][0]
        memory = first.new_zeros(size, length, first.shape[-1])
        memory_lens = source_lens.new_zeros(size)
        for name, rows in (("speech", is_speech), ("text", ~is_speech)):
            part, lens = parts[name]
            memory[rows, : part.shape[1]] = part
            memory_lens[rows] = lens
        return memory, memory_lens, is_speech, parts

    # -- training ----------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Teacher-forced multi-task step (ASR, ST and MT items may share a batch).

        batch: ``features`` FloatTensor[B, T, F] and ``feature_lens`` LongTensor[B] (optional:
        without them, or where ``feature_lens[b] == 0``, the item is text-only MT and its
        ``source_phones`` are the encoder input); ``source_phones`` LongTensor[B, P] and
        ``source_lens`` LongTensor[B] (CTC targets of speech items); ``target_phones``
        LongTensor[B, Q], ``target_lens`` LongTensor[B], ``target_langs`` LongTensor[B] (the
        decoder's output language: the source language for ASR, the other one for ST/MT).

        Returns:
            ``loss``, ``ctc_loss`` (0 without speech items), ``att_loss``, ``accuracy`` (decoder
            top-1 over target phones + EOS): scalars; ``weight``: number of decoder targets;
            ``logits`` FloatTensor[B, Q + 1, num_phones + 1] (row ``q`` predicts target ``q``,
            row ``target_lens[b]`` predicts EOS).
        """
        missing = [key for key in BATCH_KEYS if key not in batch]
        if missing:
            raise DataError(f"transformer_st batch lacks {missing}; expected {list(BATCH_KEYS)} "
                            "plus optional features/feature_lens.")
        memory, memory_lens, is_speech, parts = self._encode_batch(batch)
        target, target_lens = batch["target_phones"], batch["target_lens"]
        logits = self.decoder(target, batch["target_langs"], memory, lengths_to_mask(memory_lens, memory.shape[1]))
        labels = torch.full(logits.shape[:2], IGNORE, dtype=torch.long, device=logits.device)  # [B, Q+1]
        positions = torch.arange(target.shape[1], device=target.device)
        labels[:, :-1] = torch.where(positions < target_lens.unsqueeze(1), target, IGNORE)
        labels.scatter_(1, target_lens.unsqueeze(1), self.eos_id)
        counted = labels != IGNORE
        num_targets = counted.sum()
        att_loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum",
                                   label_smoothing=self.config.label_smoothing) / num_targets.clamp_min(1)
        accuracy = (logits.argmax(-1) == labels)[counted].float().mean()
        if "speech" in parts:
            ctc_loss = self._ctc_loss(*parts["speech"], batch["source_phones"][is_speech], batch["source_lens"][is_speech])
            loss = self.config.ctc_weight * ctc_loss + (1.0 - self.config.ctc_weight) * att_loss
        else:
            ctc_loss, loss = att_loss.new_zeros(()), att_loss
        if self.training:
            # touch every parameter, so DDP sees gradients for the path a batch did not use
            loss = loss + 0.0 * sum(parameter.view(-1)[0] for parameter in self.parameters())
        return {"loss": loss, "ctc_loss": ctc_loss.detach(), "att_loss": att_loss.detach(), "accuracy": accuracy.detach(),
                "weight": num_targets.float(), "logits": logits}

    def _ctc_loss(self, memory: torch.Tensor, memory_lens: torch.Tensor, targets: torch.Tensor,
                  target_lens: torch.Tensor) -> torch.Tensor:
        """CTC of source phones (LongTensor[B, P]) on the encoder output, summed and divided by the
        number of target phones. Impossible alignments (too few frames) count zero."""
        log_probs = self.ctc_head(memory).float().log_softmax(dim=-1)  # [B, S, C]
        total = F.ctc_loss(log_probs.transpose(0, 1), targets, memory_lens, target_lens, blank=BLANK_ID,
                           reduction="sum", zero_infinity=True)
        return total / target_lens.sum().clamp_min(1)

    # -- tensor-level decoding ---------------------------------------------------------------
    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """No gradients and eval mode, restoring the previous mode afterwards."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def ctc_log_probs(self, features: torch.Tensor, feature_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features: FloatTensor[B, T, F], feature_lens: LongTensor[B] -> (CTC log-posteriors
        FloatTensor[B, S, num_phones], LongTensor[B] encoder lengths); blank = class 0."""
        with self._inference():
            memory, lengths = self.encode_speech(features, feature_lens)
            return self.ctc_head(memory).float().log_softmax(dim=-1), lengths

    def recognize_ids(self, features: torch.Tensor, feature_lens: torch.Tensor) -> list[list[int]]:
        """CTC greedy decoding of a padded batch -> B lists of source phone ids."""
        log_probs, lengths = self.ctc_log_probs(features, feature_lens)
        return ctc_greedy_decode(log_probs, lengths, blank=BLANK_ID)

    def _decode(self, memory: torch.Tensor, memory_lens: torch.Tensor, target_langs: torch.Tensor,
                beam_size: int | None, ratio: float) -> list[list[int]]:
        beam_size = self.config.beam_size if beam_size is None else beam_size
        if beam_size < 1:
            raise ConfigError(f"beam_size must be >= 1, got {beam_size}.")
        valid = lengths_to_mask(memory_lens, memory.shape[1])
        max_lengths = torch.ceil(memory_lens.double() * ratio).long() + self.config.max_length_margin
        if beam_size == 1:
            return greedy_search(self.decoder, memory, valid, target_langs, max_lengths)
        results = []
        for row, length in enumerate(memory_lens.tolist()):
            results.append(beam_search(
                self.decoder, memory[row : row + 1, :length], valid[row : row + 1, :length], int(target_langs[row]),
                beam_size=beam_size, max_length=int(max_lengths[row]), length_penalty=self.config.length_penalty,
            ))
        return results

    def translate_ids(self, features: torch.Tensor, feature_lens: torch.Tensor, target_langs: torch.Tensor,
                      *, beam_size: int | None = None) -> list[list[int]]:
        """Attention decoding of a padded speech batch into ``target_langs`` (LongTensor[B]) ->
        B lists of target phone ids. ``beam_size`` defaults to the config's (1 = greedy)."""
        with self._inference():
            memory, lengths = self.encode_speech(features, feature_lens)
            return self._decode(memory, lengths, target_langs, beam_size, self.config.max_length_ratio)

    def translate_text_ids(self, phones: torch.Tensor, phone_lens: torch.Tensor, target_langs: torch.Tensor,
                           *, beam_size: int | None = None) -> list[list[int]]:
        """MT: source phones LongTensor[B, P] (right-padded), phone_lens LongTensor[B] -> B lists
        of target phone ids in ``target_langs``."""
        with self._inference():
            memory, lengths = self.encode_text(phones, phone_lens)
            return self._decode(memory, lengths, target_langs, beam_size, self.config.max_text_length_ratio)

    def ctc_align(self, features: torch.Tensor, phone_ids: torch.Tensor, *, num_frames: int | None = None) -> torch.Tensor:
        """Per-phone durations by Viterbi forced alignment over the CTC posteriors.

        Args:
            features: FloatTensor[T, F] of one utterance (:meth:`featurize`).
            phone_ids: LongTensor[N] of its source phones (no ``<pad>``).
            num_frames: frames the durations must sum to (e.g. the codec frames of the same
                audio); default ``T`` (10 ms feature frames).

        Returns:
            LongTensor[N] summing to ``num_frames``. Alignment happens at the encoder rate
            (:attr:`encoder_frame_rate`); blank frames are split between neighbouring phones
            and the boundaries are scaled proportionally to ``num_frames``.

        Raises:
            DataError: the utterance has fewer encoder frames than the phones need.
        """
        if features.dim() != 2:
            raise DataError(f"ctc_align takes one utterance's features [T, F], got {tuple(features.shape)}.")
        num_features = torch.tensor([features.shape[0]], device=features.device)
        log_probs, lengths = self.ctc_log_probs(features.unsqueeze(0), num_features)
        frame_targets = ctc_forced_align(log_probs[0, : int(lengths[0])], phone_ids, blank=BLANK_ID)
        durations = alignment_durations(frame_targets, phone_ids.numel())
        return rescale_durations(durations, features.shape[0] if num_frames is None else num_frames)

    # -- waveform / Phone API ----------------------------------------------------------------
    def featurize(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """wav: FloatTensor[S] -> normalised fbank FloatTensor[T, num_mels]."""
        return self.fbank(wav, sample_rate)

    def featurize_batch(self, wavs: Sequence[torch.Tensor], sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
        """B waveforms -> (FloatTensor[B, T, F] right-padded with 0, LongTensor[B] frames)."""
        if len(wavs) == 0:
            raise AudioError("no waveforms given; pass at least one.")
        padded, lengths = pad_sequences([self.featurize(wav, sample_rate).T for wav in wavs])  # [B, F, T]
        device = self.ctc_head.weight.device
        return padded.transpose(1, 2).to(device), lengths.to(device)

    def _tokens(self) -> list[str]:
        if self.token_list is None:
            raise ConfigError("transformer_st needs the phone table's token_list (context token_list=...) to "
                              "return Phones; use recognize_ids/translate_ids for ids.")
        return self.token_list

    def ids_to_phones(self, ids: Sequence[int]) -> PhoneSequence:
        """Phone ids -> :class:`Phone` list (``<pad>`` and end-of-sentence dropped)."""
        tokens = self._tokens()
        return [Phone.from_token(tokens[index]) for index in ids if 0 < index < len(tokens)]

    def phones_to_ids(self, phones: Sequence[Phone | str]) -> torch.Tensor:
        """Phones (or tokens) -> LongTensor[N] ids; unknown tokens are an error (not ``<unk>``)."""
        table = {token: index for index, token in enumerate(self._tokens())}
        tokens = [phone.token if isinstance(phone, Phone) else phone for phone in phones]
        unknown = sorted({token for token in tokens if token not in table})
        if unknown:
            raise DataError(f"phones {unknown} are not in the model's phone table.")
        return torch.tensor([table[token] for token in tokens], dtype=torch.long)

    def _language_id(self, lang: str) -> int:
        identifier = language_id(lang)
        if identifier >= self.num_languages:
            raise ConfigError(f"language {lang!r} has ID {identifier}, but the model knows {self.num_languages} languages.")
        return identifier

    def recognize_batch(self, wavs: Sequence[torch.Tensor], sample_rate: int) -> list[PhoneSequence]:
        """B waveforms -> B source-phone sequences (CTC greedy)."""
        self._tokens()  # fail before computing anything
        features, lengths = self.featurize_batch(wavs, sample_rate)
        return [self.ids_to_phones(ids) for ids in self.recognize_ids(features, lengths)]

    def translate_batch(self, wavs: Sequence[torch.Tensor], sample_rate: int, target_lang: str,
                        *, beam_size: int | None = None) -> list[PhoneSequence]:
        """B waveforms -> B phone sequences in ``target_lang`` (attention decoder)."""
        self._tokens()
        features, lengths = self.featurize_batch(wavs, sample_rate)
        langs = torch.full((len(wavs),), self._language_id(target_lang), dtype=torch.long, device=features.device)
        return [self.ids_to_phones(ids) for ids in self.translate_ids(features, lengths, langs, beam_size=beam_size)]

    def phone_log_likelihood(self, wavs: Sequence[torch.Tensor], sample_rate: int,
                             phones: Sequence[Sequence[str]]) -> list[float]:
        """CTC log-likelihood of each waveform's phones, per phone.

        wavs: B FloatTensor[S_b]; phones: B token sequences (tokens outside the phone table are
        skipped). Returns B floats ``log P(phones | wav) / len(phones)`` under the CTC head;
        ``-inf`` where it is impossible (audio shorter than the subsampling's receptive field or
        with fewer encoder frames than the phones need, or no known phone).
        """
        if len(wavs) != len(phones):
            raise DataError(f"phone_log_likelihood: {len(wavs)} waveforms but {len(phones)} phone sequences.")
        if len(wavs) == 0:
            return []
        table = {token: index for index, token in enumerate(self._tokens())}
        targets = [torch.tensor([table[t] for t in seq if t in table and table[t] != BLANK_ID], dtype=torch.long)
                   for seq in phones]
        features, feature_lens = self.featurize_batch(wavs, sample_rate)
        scores = [-math.inf] * len(wavs)
        usable = [row for row, (length, target) in enumerate(zip(feature_lens.tolist(), targets))
                  if length >= self.subsampling.min_input_frames and target.numel() > 0]
        if not usable:
            return scores
        rows = torch.tensor(usable, device=features.device)
        log_probs, lengths = self.ctc_log_probs(features[rows], feature_lens[rows])  # [U, S, C]
        padded, target_lens = pad_sequences([targets[row] for row in usable])
        losses = F.ctc_loss(log_probs.transpose(0, 1), padded.to(log_probs.device), lengths, target_lens.to(lengths.device),
                            blank=BLANK_ID, reduction="none", zero_infinity=False)  # [U], -log P
        for row, loss, count in zip(usable, losses.tolist(), target_lens.tolist()):
            scores[row] = -loss / count if math.isfinite(loss) else -math.inf
        return scores

    def recognize(self, wav: torch.Tensor, sample_rate: int) -> PhoneSequence:
        """wav FloatTensor[S] -> source-language phones (CTC greedy)."""
        return self.recognize_batch([wav], sample_rate)[0]

    def translate(self, wav: torch.Tensor, sample_rate: int, target_lang: str) -> PhoneSequence:
        """wav FloatTensor[S] -> phones in ``target_lang`` (beam search with the config's beam)."""
        return self.translate_batch([wav], sample_rate, target_lang)[0]


def _validate_config(config: TransformerST.Config) -> None:
    """Raise :class:`ConfigError` naming the first invalid option."""
    name = "st_frontend 'transformer_st'"
    check_attention_width(name, config.d_model, config.num_heads)
    check_dropout(name, config.dropout)
    require_minimums(config, f"{name}: ", dict.fromkeys(
        ("encoder_layers", "decoder_layers", "conv_channels", "ffn_dim", "num_mels", "beam_size", "sample_rate"), 1))
    if not 1 <= config.subsampling_layers <= 3:
        raise ConfigError(f"{name}: subsampling_layers must be 1, 2 or 3, got {config.subsampling_layers}.")
    if config.num_mels < 2 ** (config.subsampling_layers + 1) - 1:
        raise ConfigError(f"{name}: num_mels {config.num_mels} is too small for {config.subsampling_layers} conv layers.")
    if not 0.0 <= config.ctc_weight <= 1.0:
        raise ConfigError(f"{name}: ctc_weight must be in [0, 1], got {config.ctc_weight}.")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise ConfigError(f"{name}: label_smoothing must be in [0, 1), got {config.label_smoothing}.")
    for option in ("max_length_ratio", "max_text_length_ratio"):
        if not (math.isfinite(getattr(config, option)) and getattr(config, option) > 0):
            raise ConfigError(f"{name}: {option} must be a positive number, got {getattr(config, option)}.")
    if config.max_length_margin < 0:
        raise ConfigError(f"{name}: max_length_margin must be >= 0, got {config.max_length_margin}.")
