"""VALL-E X inference: zero-shot and cross-lingual TTS, and speech-to-speech translation.

One :class:`VallexPipeline` holds the text frontend, the phone table, the codec, the AR and NAR
codec LMs and (optionally) the speech recognition & translation frontend, all loaded from one
pipeline pack (:func:`speechkit.infer.pipeline_pack.assemble_pipeline_pack`)::

    pipeline = VallexPipeline.load("exp/vallex_pack")
    prompt = pipeline.make_voice_prompt(wav, 16000, "昨天是星期日。")     # zh prompt
    [english] = pipeline.synthesize("Yesterday was Sunday.", prompt)      # en speech, same voice
    speech, info = pipeline.s2st(wav, 16000, target_lang="en")             # S2ST

Synthesis follows the paper: the phone sequence is <prompt transcript ; target text>, the AR LM
continues the prompt's level-1 codes until its end token (KV-cached, many requests per batch,
each stopping on its own), the NAR LM fills levels 2..L greedily from the target phones and the
whole prompt, and the codec decodes (a feature-predicting NAR such as ``continuous_nar`` hands
its features straight to the codec's vocoder). The AR's language ID is the target text's language unless
``accent`` overrides it (the paper's accent control).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from speechkit.audio.io import resample_audio
from speechkit.data.collate import pad_sequences
from speechkit.errors import AudioError, ConfigError, DataError, TextError
from speechkit.infer.precision import apply_precision
from speechkit.infer.text_split import join_with_pauses, split_sentences
from speechkit.infer.voice_prompt import VoicePrompt
from speechkit.interfaces.codec import Codec
from speechkit.interfaces.frontend import BOUNDARY, Frontend
from speechkit.interfaces.lm import ARLanguageModel, NARLanguageModel
from speechkit.interfaces.st import STFrontend
from speechkit.nn.sampling import check_sampling
from speechkit.text.languages import LANGUAGES, NEUTRAL, language_id, token_language, token_language_ids
from speechkit.text.phone_table import PhoneTable
from speechkit.utils.device import checked_device

log = logging.getLogger("speechkit.infer")
#: Waveforms whose peak is below this are treated as silence (nothing to clone).
SILENCE_PEAK = 1e-4


@dataclasses.dataclass
class SynthesisOptions:
    """Pipeline options that are not model weights.

    Attributes:
        max_prompt_seconds: longer prompts keep their first this-many seconds (0 = no limit), with
            a warning; a given transcript should then describe only that part (S2ST recognises the
            prompt's phones in the kept part).
        min_prompt_seconds: shorter prompt audio is an error (too little voice to clone).
        min_output_seconds: a shorter AR output is no speech (and too short for some codecs'
            decoders): the result is empty, with stop reason ``empty``.
        sentence_pause_ms: silence between the sentences of a long text.
        max_sentence_chars: longer sentences are split at clause punctuation (0 = never).
        batch_size: requests decoded together.
        temperature, top_k, top_p: AR sampling (None: the AR model's config); temperature 0 or
            top_k 1 is greedy.
        seed: seeds AR sampling (None: not seeded).
        precision: ``fp32``, ``bf16`` or ``int8`` (CPU) linear layers in the AR and NAR LMs
            (:func:`speechkit.infer.precision.apply_precision`; fp32 weights are pre-packed on
            CPU). Reduced precision is faster and changes outputs slightly (docs/performance.md).
        kv_cache: ``fp32``, ``bf16``, ``int8`` or ``int4`` KV cache for AR decoding (bf16 halves
            the bytes each step reads, int8 quarters them, int4 takes an eighth with 15 levels per
            element; docs/performance.md).
        compile: run the NAR's Transformer through ``torch.compile`` (fp32/bf16; the first
            synthesis compiles it, tens of seconds; :mod:`speechkit.infer.compiled`).
        attention: arithmetic of the NAR's attention: ``auto`` (bf16 products with bf16 and int8
            precision on CPU, else fp32), ``fp32`` or ``bf16`` (:mod:`speechkit.nn.bf16_attention`).
        ar_decoding: decoding options of the AR model set over its trained config (fields of
            its ``Config``, e.g. ``{"advance_survival": 0.5}`` for ``aligned_ar``), see
            :func:`apply_ar_decoding`.
        candidates: outputs made per request (1 = one). With more, the first is decoded with the
            sampling above and the others with ``candidate_temperature``/``candidate_top_k``;
            the ST frontend's CTC scores how likely each output's audio says the request's
            phones (:meth:`STFrontend.phone_log_likelihood`) and the most likely one is kept.
            Needs an ST frontend; costs ``candidates`` x the synthesis time.
        candidate_temperature, candidate_top_k: sampling of the extra candidates (``top_k`` None:
            the AR model's config).
        candidate_languages: target languages whose requests get candidates (None = all).
    """

    max_prompt_seconds: float = 10.0
    min_prompt_seconds: float = 0.2
    min_output_seconds: float = 0.1
    sentence_pause_ms: float = 200.0
    max_sentence_chars: int = 200
    batch_size: int = 8
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = 0
    precision: str = "fp32"
    kv_cache: str = "fp32"
    compile: bool = False
    attention: str = "auto"
    ar_decoding: dict[str, Any] = dataclasses.field(default_factory=dict)
    candidates: int = 1
    candidate_temperature: float = 0.5
    candidate_top_k: int | None = None
    candidate_languages: list[str] | None = None

    def __post_init__(self) -> None:
        """Raise :class:`ConfigError` for settings that cannot mean anything (checked when made)."""
        if self.candidates < 1:
            raise ConfigError(f"candidates must be >= 1 (1 = no reranking), got {self.candidates}.")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.max_prompt_seconds < 0 or self.min_prompt_seconds < 0 or self.sentence_pause_ms < 0:
            raise ConfigError("max_prompt_seconds (0 = no limit), min_prompt_seconds and sentence_pause_ms must be "
                              f">= 0, got {self.max_prompt_seconds}, {self.min_prompt_seconds}, {self.sentence_pause_ms}.")
        check_sampling(self.temperature, self.top_k, self.top_p, "synthesis options")
        check_sampling(self.candidate_temperature, self.candidate_top_k, what="synthesis options (candidates)")


def apply_ar_decoding(ar_lm: Any, options: dict[str, Any]) -> Any:
    """Set decoding options of a trained AR model, in place: ``options`` are fields of its
    ``config`` dataclass (e.g. ``advance_survival`` of ``aligned_ar``); returns the model.

    Raises:
        ConfigError: a name that is not a field of the model's config (lists the fields).
    """
    if not options:
        return ar_lm
    config = ar_lm.config
    fields = {field.name: field for field in dataclasses.fields(config)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ConfigError(f"ar_decoding: {unknown} are not options of ar_lm {getattr(ar_lm, 'registered_name', '')!r}; "
                          f"its options are {sorted(fields)}.")
    ar_lm.config = dataclasses.replace(config, **options)
    return ar_lm


@dataclasses.dataclass
class SynthesisRequest:
    """One sentence to speak: the voice prompt, the target phones and the languages.

    ``lang`` is the language of the target text; ``lid`` the language ID given to the AR
    (``lang`` unless an accent override).
    """

    prompt: VoicePrompt
    phones: list[str]
    lang: str
    lid: str


@dataclasses.dataclass
class SynthesisResult:
    """Output of one request: wav float32[S] at the codec rate, codes LongTensor[L, T], and
    why the AR stopped (``eos``, ``max_length``, ``loop`` or ``empty``). With candidate
    reranking, ``candidate`` is the kept output's index (0 = decoded with the main sampling) and
    ``candidate_scores`` the ST frontend's per-phone log-likelihood of every candidate."""

    wav: np.ndarray
    codes: torch.Tensor
    stop_reason: str
    request: SynthesisRequest
    candidate: int = 0
    candidate_scores: list[float] | None = None


class VallexPipeline:
    """Text/speech -> speech in a prompt speaker's voice (see the module docstring).

    Args:
        frontend: text -> phones; phone_table: the token ids the LMs were trained with;
        codec, ar_lm, nar_lm: built and loaded components (the LMs are prepared for inference
            in ``options.precision``, in place: keep them for inference only); st_frontend:
            optional, for S2ST; options: :class:`SynthesisOptions`.
    """

    def __init__(
        self,
        frontend: Frontend,
        phone_table: PhoneTable,
        codec: Codec,
        ar_lm: ARLanguageModel,
        nar_lm: NARLanguageModel,
        st_frontend: STFrontend | None = None,
        options: SynthesisOptions | None = None,
    ) -> None:
        self.frontend, self.phone_table, self.codec = frontend, phone_table, codec
        self.ar_lm, self.nar_lm, self.st_frontend = ar_lm, nar_lm, st_frontend
        self.options = options or SynthesisOptions()  # checked when made (SynthesisOptions.__post_init__)
        self.device = _device_of(ar_lm)
        apply_ar_decoding(ar_lm, dict(self.options.ar_decoding))
        for model in (ar_lm, nar_lm):
            if isinstance(model, torch.nn.Module):
                apply_precision(model, self.options.precision, kv_cache=self.options.kv_cache, compile=self.options.compile,
                                attention=self.options.attention)

    @classmethod
    def load(cls, pack_dir: str | Path, options: SynthesisOptions | None = None,
             device: str | torch.device = "cpu") -> "VallexPipeline":
        """Load every component of a pipeline pack (see :func:`assemble_pipeline_pack`).

        Raises:
            DataError: not a pipeline pack (no ``tokens.txt``, missing components).
            PluginError: a component's plugin is not installed.
        """
        from speechkit.infer.pipeline_pack import TOKENS_FILE, REQUIRED_KINDS
        from speechkit.pack import load_pack, read_manifest

        pack_dir = Path(pack_dir)
        kinds = list(read_manifest(pack_dir)["components"])
        missing = [kind for kind in REQUIRED_KINDS if kind not in kinds]
        if missing:
            raise DataError(f"{pack_dir} is not a VALL-E X pipeline pack: it lacks {missing}. "
                            "Build one with stage 7 (python -m speechkit.bin.infer) or assemble_pipeline_pack.")
        table = PhoneTable.load(pack_dir / TOKENS_FILE)
        pack = load_pack(pack_dir, device=checked_device(device))
        return cls(pack["frontend"], table, pack["codec"], pack["ar_lm"], pack["nar_lm"],
                   pack.components.get("st_frontend"), options)

    # -- languages and phones ------------------------------------------------------------------
    def check_language(self, lang: str, what: str = "language") -> str:
        """``lang`` if the frontend and the LMs support it.

        Raises:
            ConfigError: unsupported language (names the supported ones).
        """
        supported = [code for code in self.frontend.languages if LANGUAGES.get(code, 10**6) < self.ar_lm.num_languages]
        if lang not in supported:
            raise ConfigError(f"Unsupported {what} {lang!r}; this pipeline speaks {supported}.")
        return lang

    def phonemize(self, text: str, lang: str | None = None) -> tuple[list[str], str]:
        """Text -> (phone-table tokens, language). ``lang=None``: detected (the language with
        the most phones; code-switched text keeps each run's own phones).

        Raises:
            TextError: empty or unpronounceable text; ConfigError: unsupported ``lang``.
        """
        if not isinstance(text, str) or not text.strip():
            raise TextError("Empty text: give at least one word to synthesise.")
        if lang is not None:
            self.check_language(lang)
        tokens = [phone.token for phone in self.frontend.phonemize(text, lang)]
        detected = dominant_language(tokens)
        if detected is None:
            raise TextError(f"Nothing pronounceable in {text!r} (only pauses/punctuation).")
        unknown = self.phone_table.unknown(tokens)
        if unknown:
            log.warning("phones %s of %r are not in the phone table; they become <unk>", unknown, text)
        return tokens, lang or self.check_language(detected, "detected language")

    # -- voice prompts -------------------------------------------------------------------------
    def encode_audio(self, wav: np.ndarray | torch.Tensor, sample_rate: int, what: str = "audio") -> torch.Tensor:
        """Mono audio at ``sample_rate`` -> codes LongTensor[L, T] (resampled to the codec rate).

        Raises:
            AudioError: not 1-D, empty, non-finite, silent, or shorter than ``min_prompt_seconds``.
        """
        samples = _check_wav(wav, sample_rate, what, self.options.min_prompt_seconds)
        samples = resample_audio(samples, int(sample_rate), int(self.codec.sample_rate))
        codes = self.codec.encode(torch.from_numpy(np.ascontiguousarray(samples)))
        assert codes.dim() == 2 and codes.shape[0] == self.codec.num_quantizers, tuple(codes.shape)
        return codes.long()

    def make_voice_prompt(self, wav: np.ndarray | torch.Tensor, sample_rate: int, text: str,
                          lang: str | None = None) -> VoicePrompt:
        """A speaker's utterance and its transcript -> :class:`VoicePrompt` (reusable, savable).

        wav: float[S] mono at ``sample_rate``; the prompt keeps at most ``max_prompt_seconds``.
        """
        tokens, lang = self.phonemize(text, lang)
        return self.prompt_from_phones(wav, sample_rate, tokens, lang, text)

    def prompt_from_phones(self, wav: np.ndarray | torch.Tensor, sample_rate: int, phones: Sequence[str],
                           lang: str, text: str = "") -> VoicePrompt:
        """Like :meth:`make_voice_prompt` with the transcript already as phone tokens (S2ST)."""
        samples = self._cropped_prompt(_check_wav(wav, sample_rate, "prompt audio", self.options.min_prompt_seconds),
                                       sample_rate, "its transcript should say only what they say")
        codes = self.encode_audio(samples, sample_rate, "prompt audio")
        return VoicePrompt(codes=codes, phones=list(phones) or [BOUNDARY], lang=lang, text=text,
                           codec=self.codec.registered_name, frame_rate=float(self.codec.frame_rate))

    def _cropped_prompt(self, samples: np.ndarray, sample_rate: int, transcript_note: str) -> np.ndarray:
        """The first ``max_prompt_seconds`` of float32[S] prompt audio (a warning when it crops)."""
        limit = self.options.max_prompt_seconds
        if limit <= 0 or len(samples) <= limit * sample_rate:
            return samples
        log.warning("prompt audio is %.1f s; keeping its first %.1f s (max_prompt_seconds): %s. To choose "
                    "the part, cut the audio yourself (e.g. sox in.wav out.wav trim 0 %g).",
                    len(samples) / sample_rate, limit, transcript_note, limit)
        return samples[: int(limit * sample_rate)]

    def check_prompt(self, prompt: VoicePrompt) -> VoicePrompt:
        """``prompt`` if it fits this pipeline's codec (levels and code range).

        Raises:
            DataError: the prompt was made with another codec or layout.
        """
        levels, size = self.codec.num_quantizers, self.codec.codebook_size
        if prompt.codec and prompt.codec != self.codec.registered_name:
            raise DataError(f"Voice prompt was made with codec {prompt.codec!r}; this pipeline uses "
                            f"{self.codec.registered_name!r}. Re-create the prompt from its audio.")
        if prompt.codes.shape[0] != levels or int(prompt.codes.min()) < 0 or int(prompt.codes.max()) >= size:
            raise DataError(f"Voice prompt codes {tuple(prompt.codes.shape)} do not fit this codec "
                            f"({levels} levels of {size} codes). Re-create the prompt from its audio.")
        return prompt

    # -- text to speech ------------------------------------------------------------------------
    def text_request(self, text: str, prompt: VoicePrompt, lang: str | None = None,
                     accent: str | None = None) -> SynthesisRequest:
        """One sentence -> :class:`SynthesisRequest` (language detected unless given)."""
        tokens, lang = self.phonemize(text, lang)
        lid = self.check_language(accent, "accent") if accent is not None else lang
        return SynthesisRequest(self.check_prompt(prompt), tokens, lang, lid)

    def synthesize(
        self,
        texts: str | Sequence[str],
        prompt: VoicePrompt,
        *,
        lang: str | None = None,
        accent: str | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
    ) -> list[np.ndarray]:
        """Speak each text in the prompt's voice -> one float32[S] waveform per text.

        Long texts are split into sentences, all sentences of all texts are decoded in batches
        with the same prompt, and each text's sentences are joined with short pauses.
        Sampling arguments default to :attr:`options` (then to the AR model's config).

        Raises:
            TextError: an empty text; ConfigError: unsupported ``lang``/``accent``.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise TextError("No text given: pass at least one text to synthesise.")
        owners: list[int] = []
        requests: list[SynthesisRequest] = []
        for index, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise TextError(f"Text {index} is empty: give at least one word to synthesise.")
            for sentence in split_sentences(text, self.options.max_sentence_chars):
                requests.append(self.text_request(sentence, prompt, lang, accent))
                owners.append(index)
        results = self.generate(requests, temperature=temperature, top_k=top_k, top_p=top_p,
                                seed=seed, batch_size=batch_size)
        return [
            join_with_pauses([r.wav for r, owner in zip(results, owners) if owner == index],
                             self.sample_rate, self.options.sentence_pause_ms)
            for index in range(len(texts))
        ]

    @property
    def sample_rate(self) -> int:
        """Rate of every waveform the pipeline returns (the codec's)."""
        return int(self.codec.sample_rate)

    # -- the batched engine --------------------------------------------------------------------
    def generate(
        self,
        requests: Sequence[SynthesisRequest],
        *,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
    ) -> list[SynthesisResult]:
        """Decode ``requests`` in batches (longest first, so padding stays small) -> results in
        the order of ``requests``. Greedy results do not depend on ``batch_size``. With
        ``options.candidates > 1`` each request keeps the best of several outputs (see
        :class:`SynthesisOptions`).

        Raises:
            ConfigError: ``batch_size < 1``; sampling settings out of range (a negative
                temperature or top_k, top_p outside (0, 1]); candidates without an ST frontend.
        """
        opts = self.options
        batch_size = opts.batch_size if batch_size is None else batch_size
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
        sampling = {
            "temperature": opts.temperature if temperature is None else temperature,
            "top_k": opts.top_k if top_k is None else top_k,
            "top_p": opts.top_p if top_p is None else top_p,
        }
        check_sampling(**sampling)
        seed = opts.seed if seed is None else seed
        generator = torch.Generator(device=self.device).manual_seed(int(seed)) if seed is not None else None
        results = self._decode_sorted(list(requests), sampling, generator, batch_size)
        if opts.candidates > 1:
            results = self._rerank(list(requests), results, generator, batch_size)
        return results

    def _decode_sorted(self, requests: list[SynthesisRequest], sampling: dict[str, Any],
                       generator: torch.Generator | None, batch_size: int) -> list[SynthesisResult]:
        """All requests, longest first in batches of ``batch_size`` -> results in request order."""
        order = sorted(range(len(requests)),
                       key=lambda i: -(len(requests[i].prompt.phones) + len(requests[i].phones) + requests[i].prompt.num_frames))
        results: list[SynthesisResult | None] = [None] * len(requests)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for index, result in zip(chunk, self._generate_batch([requests[i] for i in chunk], sampling, generator)):
                results[index] = result
        return [result for result in results if result is not None]

    def _rerank(self, requests: list[SynthesisRequest], first: list[SynthesisResult],
                generator: torch.Generator | None, batch_size: int) -> list[SynthesisResult]:
        """Best of ``options.candidates`` outputs per request (``first`` is candidate 0), by the
        ST frontend's CTC log-likelihood of the request's phones."""
        opts = self.options
        languages = opts.candidate_languages
        chosen = [index for index, request in enumerate(requests) if languages is None or request.lang in languages]
        if not chosen:
            return first
        if self.st_frontend is None:
            raise ConfigError(f"candidates: {opts.candidates} needs an ST frontend to rank the outputs, and this "
                              "pipeline pack has none; set candidates: 1 or train stage 6 and re-assemble the pack.")
        extra = opts.candidates - 1
        sampling = {"temperature": opts.candidate_temperature, "top_k": opts.candidate_top_k, "top_p": None}
        more = self._decode_sorted([requests[index] for index in chosen for _ in range(extra)], sampling,
                                   generator, batch_size)
        pools = {index: [first[index], *more[k * extra : (k + 1) * extra]] for k, index in enumerate(chosen)}
        flat = [result for index in chosen for result in pools[index]]
        scores = [-math.inf] * len(flat)
        min_samples = int(0.1 * self.sample_rate)  # a candidate shorter than 0.1 s says nothing
        audible = [k for k, result in enumerate(flat) if result.wav.size >= min_samples]
        for start in range(0, len(audible), batch_size):
            chunk = audible[start : start + batch_size]
            values = self.st_frontend.phone_log_likelihood(
                [torch.from_numpy(np.ascontiguousarray(flat[k].wav)) for k in chunk], self.sample_rate,
                [flat[k].request.phones for k in chunk])
            for k, value in zip(chunk, values):
                scores[k] = float(value)
        results = list(first)
        for k, index in enumerate(chosen):
            own = scores[k * opts.candidates : (k + 1) * opts.candidates]
            best = max(range(len(own)), key=lambda c: (own[c], -c))  # ties keep the earlier candidate
            results[index] = dataclasses.replace(pools[index][best], candidate=best, candidate_scores=own)
        return results

    @torch.no_grad()
    def _generate_batch(self, requests: list[SynthesisRequest], sampling: dict[str, Any],
                        generator: torch.Generator | None) -> list[SynthesisResult]:
        """AR -> NAR -> codec for one batch of B requests."""
        device, table = self.device, self.phone_table
        full = [req.prompt.phones + req.phones for req in requests]
        phones, phone_lens = pad_sequences([torch.tensor(table.encode(tokens)) for tokens in full])
        phone_langs, _ = pad_sequences([torch.tensor(token_language_ids(tokens)) for tokens in full])
        prompts = [req.prompt.codes for req in requests]  # each LongTensor[L, Tp]
        prompt_level1, prompt_lens = pad_sequences([codes[0] for codes in prompts])  # [B, Tp]
        target_langs = torch.tensor([language_id(req.lid) for req in requests])
        num_target = torch.tensor([len(req.phones) for req in requests])
        generation = self.ar_lm.generate_batch(
            phones.to(device), phone_lens.to(device), phone_langs.to(device), prompt_level1.to(device),
            prompt_lens.to(device), target_langs.to(device), num_target_phones=num_target.to(device),
            generator=generator, **sampling,
        )
        level1 = [codes.cpu() for codes in generation.codes]
        min_frames = max(2, math.ceil(self.options.min_output_seconds * self.codec.frame_rate))
        nonempty = [row for row, codes in enumerate(level1) if codes.numel() >= min_frames]
        all_levels: dict[int, torch.Tensor] = {}
        features: dict[int, torch.Tensor] = {}
        if nonempty:
            alignment = ([generation.frame_phones[row].cpu() for row in nonempty]
                         if generation.frame_phones is not None else None)
            filled, predicted = self._fill_levels([requests[row] for row in nonempty], [level1[row] for row in nonempty],
                                                  alignment)
            all_levels = dict(zip(nonempty, filled))
            features = dict(zip(nonempty, predicted)) if predicted is not None else {}
        results = []
        for row, request in enumerate(requests):
            if row not in all_levels:
                log.warning("the AR model stopped after %d frame(s) for %d target phones; no audio returned",
                            level1[row].numel(), len(request.phones))
                empty = torch.zeros(self.codec.num_quantizers, 0, dtype=torch.long)
                results.append(SynthesisResult(np.zeros(0, dtype=np.float32), empty, "empty", request))
                continue
            wav = self._to_wav(all_levels[row], features.get(row))
            results.append(SynthesisResult(wav, all_levels[row], generation.stop_reasons[row], request))
        return results

    def _to_wav(self, codes: torch.Tensor, features: torch.Tensor | None) -> np.ndarray:
        """All levels' codes LongTensor[L, T] (or, with :attr:`decodes_features`, the NAR's
        predicted FloatTensor[T, F]) -> float32[S]."""
        if features is not None:
            return self.codec.features_to_wav(features).detach().cpu().float().numpy().reshape(-1)  # type: ignore[attr-defined]
        return self.codec.decode(codes).detach().cpu().float().numpy().reshape(-1)

    @torch.no_grad()
    def complete_level1(self, requests: Sequence[SynthesisRequest], level1: Sequence[torch.Tensor],
                        frame_phones: Sequence[torch.Tensor] | None = None) -> list[SynthesisResult]:
        """NAR + vocoder from given level-1 codes: the pipeline without its AR model (e.g. the
        real utterance's codes and aligned phones, the upper bound of what the AR could give).

        level1: LongTensor[T_b] per request; frame_phones: LongTensor[T_b] per request, each
        frame's index among ``request.phones`` (for NARs that use an alignment).

        Raises:
            DataError: lengths disagree or a frame points past the request's phones.
        """
        if len(level1) != len(requests) or (frame_phones is not None and len(frame_phones) != len(requests)):
            raise DataError("complete_level1: give one level-1 sequence (and frame_phones) per request.")
        for row, codes in enumerate(level1):
            if codes.dim() != 1 or codes.numel() < 2:
                raise DataError(f"complete_level1: request {row} needs a LongTensor[T >= 2] of level-1 codes.")
            if frame_phones is not None:
                alignment = frame_phones[row]
                if alignment.shape != codes.shape or int(alignment.min()) < 0 or \
                        int(alignment.max()) >= len(requests[row].phones):
                    raise DataError(f"complete_level1: frame_phones of request {row} must give one phone index "
                                    f"in 0..{len(requests[row].phones) - 1} per level-1 frame.")
        requests, level1 = list(requests), [codes.cpu().long() for codes in level1]
        alignment = [a.cpu().long() for a in frame_phones] if frame_phones is not None else None
        filled, predicted = self._fill_levels(requests, level1, alignment)
        return [SynthesisResult(self._to_wav(codes, predicted[row] if predicted is not None else None), codes,
                                "oracle", request)
                for row, (codes, request) in enumerate(zip(filled, requests))]

    @property
    def decodes_features(self) -> bool:
        """Whether the NAR's predicted features go to the vocoder directly (a feature-predicting
        NAR such as ``continuous_nar`` and a codec with ``features_to_wav``) instead of its codes."""
        return bool(getattr(self.nar_lm, "predicts_features", False)) and callable(getattr(self.codec, "features_to_wav", None))

    def _fill_levels(self, requests: list[SynthesisRequest], level1: list[torch.Tensor],
                     frame_phones: list[torch.Tensor] | None = None
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """NAR levels 2..L for B requests (level1: LongTensor[T_b] each; frame_phones: the AR's
        phone index of each frame, LongTensor[T_b] each, if it gives them) -> (LongTensor[L, T_b]
        each, and with :attr:`decodes_features` the predicted FloatTensor[T_b, F] each, else None)."""
        device, table = self.device, self.phone_table
        phones, phone_lens = pad_sequences([torch.tensor(table.encode(req.phones)) for req in requests])
        phone_langs, _ = pad_sequences([torch.tensor(token_language_ids(req.phones)) for req in requests])
        prompt_codes, prompt_lens = pad_sequences([req.prompt.codes for req in requests])  # [B, L, Tp]
        codes, code_lens = pad_sequences(level1)  # [B, T]
        args = (phones.to(device), phone_lens.to(device), phone_langs.to(device), prompt_codes.to(device),
                prompt_lens.to(device), codes.to(device), code_lens.to(device))
        lengths = [int(length) for length in code_lens]
        alignment = {"frame_phones": pad_sequences(frame_phones)[0].to(device)} if frame_phones is not None else {}
        if self.decodes_features:
            predicted = self.nar_lm.generate_features_batch(*args, **alignment)  # type: ignore[attr-defined]
            filled = self.nar_lm.requantize(predicted, args[5])  # type: ignore[attr-defined]
            features = [predicted[row, :length].cpu() for row, length in enumerate(lengths)]
        else:
            filled, features = self.nar_lm.generate_batch(*args, **alignment), None
        assert filled.shape[:2] == (len(requests), self.codec.num_quantizers), tuple(filled.shape)
        return [filled[row, :, :length].cpu() for row, length in enumerate(lengths)], features

    # -- speech to speech translation ----------------------------------------------------------
    def speech_request(
        self,
        wav: np.ndarray | torch.Tensor,
        sample_rate: int,
        target_lang: str | None = None,
        *,
        source_text: str | None = None,
        target_text: str | None = None,
        source_lang: str | None = None,
    ) -> tuple[SynthesisRequest, dict[str, Any]]:
        """Source speech -> the request that speaks its translation in the same voice.

        Without texts, the ST frontend recognises the source phones (the prompt transcript) and
        translates them into ``target_lang`` (default: the other language). With ``source_text``
        and ``target_text`` (the oracle path) the frontend phonemises them instead. The source
        utterance is the voice prompt; one longer than ``max_prompt_seconds`` is cropped to it, and
        without texts its prompt phones are then recognised in the part kept.

        Returns:
            (request, info) with ``source_lang``, ``target_lang``, ``source_phones``,
            ``target_phones`` and ``oracle``.
        """
        oracle = source_text is not None or target_text is not None
        if oracle and (source_text is None or target_text is None):
            raise TextError("The oracle S2ST path needs both source_text and target_text.")
        if target_lang is not None:
            self.check_language(target_lang, "target language")
        if oracle:
            source_phones, source_lang = self.phonemize(source_text, source_lang)  # type: ignore[arg-type]
            target_lang = target_lang or self._other_language(source_lang)
            target_phones, _ = self.phonemize(target_text, target_lang)  # type: ignore[arg-type]
            prompt = self.prompt_from_phones(wav, sample_rate, source_phones, source_lang, source_text)  # type: ignore[arg-type]
        else:
            if self.st_frontend is None:
                raise ConfigError("This pipeline pack has no st_frontend, so S2ST needs source_text and "
                                  "target_text (the oracle path); train stage 6 and re-assemble the pack.")
            samples = _check_wav(wav, sample_rate, "source speech", self.options.min_prompt_seconds)
            tensor = torch.from_numpy(samples)
            source_phones = [phone.token for phone in self.st_frontend.recognize(tensor, int(sample_rate))]
            detected = dominant_language(source_phones)
            source_lang = source_lang or detected or (self._other_language(target_lang) if target_lang else None)
            if source_lang is None:
                raise TextError("The ST frontend recognised no phones in the source speech; give target_lang.")
            target_lang = target_lang or self._other_language(source_lang)
            target_phones = [phone.token for phone in self.st_frontend.translate(tensor, int(sample_rate), target_lang)]
            if dominant_language(target_phones) is None:
                raise TextError(f"The ST frontend produced no {target_lang} phones for the source speech.")
            # the voice prompt: at most max_prompt_seconds, with the phones recognised in what it keeps
            kept = self._cropped_prompt(samples, int(sample_rate), "the prompt's phones are recognised in them")
            prompt_phones = source_phones if len(kept) == len(samples) else [
                phone.token for phone in self.st_frontend.recognize(torch.from_numpy(kept), int(sample_rate))]
            prompt = self.prompt_from_phones(kept, sample_rate, prompt_phones, source_lang)
        info = {"source_lang": source_lang, "target_lang": target_lang, "source_phones": source_phones,
                "target_phones": target_phones, "oracle": oracle}
        return SynthesisRequest(prompt, target_phones, target_lang, target_lang), info

    def s2st(
        self,
        wav: np.ndarray | torch.Tensor,
        sample_rate: int,
        target_lang: str | None = None,
        *,
        source_text: str | None = None,
        target_text: str | None = None,
        source_lang: str | None = None,
        **sampling: Any,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Translate speech into ``target_lang`` speech in the source speaker's voice.

        ``sampling``: ``temperature``, ``top_k``, ``top_p``, ``seed`` as in :meth:`synthesize`.
        Returns (wav float32[S] at :attr:`sample_rate`, info from :meth:`speech_request` plus
        ``stop_reason``).
        """
        request, info = self.speech_request(wav, sample_rate, target_lang, source_text=source_text,
                                            target_text=target_text, source_lang=source_lang)
        [result] = self.generate([request], **sampling)
        return result.wav, {**info, "stop_reason": result.stop_reason}

    def _other_language(self, lang: str) -> str:
        others = [code for code in self.frontend.languages if code != lang]
        if len(others) != 1:
            raise ConfigError(f"Cannot pick the other language of {lang!r} among {list(self.frontend.languages)}; "
                              "give the target language.")
        return self.check_language(others[0], "target language")


def dominant_language(tokens: Sequence[str]) -> str | None:
    """The language with the most phones among ``tokens`` (``None`` if only boundaries)."""
    counts = Counter(token_language(token) for token in tokens)
    counts.pop(NEUTRAL, None)
    return counts.most_common(1)[0][0] if counts else None


def _check_wav(wav: np.ndarray | torch.Tensor, sample_rate: int, what: str, min_seconds: float) -> np.ndarray:
    """float32[S] copy of a mono waveform, or :class:`AudioError` naming the problem."""
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise AudioError(f"{what}: sample_rate must be a positive int, got {sample_rate!r}.")
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    samples = np.asarray(wav, dtype=np.float32)
    if samples.ndim != 1:
        raise AudioError(f"{what} must be mono float[S], got shape {samples.shape}; mix the channels down first.")
    if samples.size == 0:
        raise AudioError(f"{what} is empty (0 samples).")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{what} contains NaN or infinite samples.")
    if samples.size < min_seconds * sample_rate:
        raise AudioError(f"{what} is {samples.size / sample_rate:.2f} s long; at least {min_seconds} s is needed.")
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise AudioError(f"{what} is silent (peak below {SILENCE_PEAK}); there is no voice to use.")
    return samples


def _device_of(model: Any) -> torch.device:
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        for parameter in parameters():
            return parameter.device
    return torch.device("cpu")
