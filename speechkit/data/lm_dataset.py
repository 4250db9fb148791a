"""Training pairs for the codec LMs (stages 4 and 5): a prompt utterance and a target utterance
of the same speaker.

Why pairs: trained on single utterances the AR learns to stop right after its acoustic prefix;
trained on (prompt, target) pairs of one speaker it sees exactly what inference gives it (a
prompt utterance with its transcript, then new text) and output lengths come out right.

Inputs of one set: ``data/<set>/{phones,utt2spk,utt2lang}`` (stages 1-2), ``dump/<set>/codes.scp``
(stage 3) and ``dump/tokens.txt``, plus ``dump/<set>/durations`` (the alignment step of stage 4,
:mod:`speechkit.align`) for a phone-synchronous AR. :func:`load_lm_corpus` joins them into an
:class:`LMCorpus`.

Prompt choice: for target item ``i`` in epoch ``e`` the prompt is another utterance of the same
speaker drawn with ``numpy.random.default_rng([seed, e, i])``: with probability
``cross_lingual_prompt_prob`` from the speaker's utterances in the *other* language (VALL-E X's
cross-lingual setting), else from the same language (falling back to whichever pool is non-empty).
The draw depends only on ``(seed, epoch, index)``, so a resumed run and DataLoader workers see the
same pairs. The epoch reaches the dataset through :class:`EpochIndexedBatchSampler`, which tags
each index as ``(epoch, index)``.

Items:

* AR (:class:`ARPairDataset`): ``phones`` = prompt transcript + target phones (as at inference),
  ``codes`` = prompt level-1 codes ++ target level-1 codes, ``prompt_len`` (no loss on the prompt),
  ``code_lang`` = the target's language ID; with durations loaded also ``durations`` aligned with
  ``phones`` (0 for the prompt transcript, the target's frames per phone after it).
* NAR (:class:`NARPairDataset`): target ``phones``, ``prompt_codes`` (all levels, optionally cropped
  to ``max_prompt_frames``) and the target's ``codes`` (all levels).

:func:`collate_ar` and :func:`collate_nar` build exactly the batch dicts documented in
:mod:`speechkit.interfaces.lm`.

Memory: with ``cache=True`` every utterance's codes are read once into memory as int16/int32
(a few hours at ~60 Hz x 8 levels is ~10 MB); ``cache=False`` reads them from the ark files on
each access (for corpora that do not fit; frame counts then come from ``utt2num_frames``).
"""
from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from speechkit.align.durations import add_durations, read_durations
from speechkit.align.mas import check_durations
from speechkit.data.collate import pad_sequences
from speechkit.data.datadir import read_table
from speechkit.data.tokens import UTT2NUM_FRAMES, load_codes, read_utt2num_frames
from speechkit.errors import ConfigError, DataError
from speechkit.text.languages import language_id
from speechkit.text.phone_table import PhoneTable

log = logging.getLogger(__name__)

#: A dataset key: a plain index (epoch 0) or ``(epoch, index)`` from :class:`EpochIndexedBatchSampler`.
ItemKey = Union[int, tuple[int, int]]


@dataclasses.dataclass
class LMCorpus:
    """One set's utterances with what the codec LMs need, index-aligned.

    Attributes:
        name: where it came from (for messages).
        utts: utterance ids (sorted).
        speakers: speaker of each utterance.
        langs: language code of each utterance (``en``, ``zh``).
        phones: LongTensor[P] phone ids per utterance.
        phone_langs: LongTensor[P] per-phone language IDs per utterance.
        num_frames: codec frames per utterance.
        codes: ``utt -> codes LongTensor[L, T]`` (an in-memory dict or a lazy reader).
        durations: frames of each phone per utterance (``dump/<set>/durations``; each list as
            long as ``phones``, summing to ``num_frames``), or None when not loaded.
    """

    name: str
    utts: list[str]
    speakers: list[str]
    langs: list[str]
    phones: list[torch.Tensor]
    phone_langs: list[torch.Tensor]
    num_frames: list[int]
    codes: Mapping[str, torch.Tensor]
    durations: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.utts)

    def codes_of(self, index: int) -> torch.Tensor:
        """codes: LongTensor[L, T] of utterance ``index``."""
        return self.codes[self.utts[index]].long()


def load_lm_corpus(
    data_dir: str | Path,
    codes_scp: str | Path,
    phone_table: PhoneTable,
    *,
    cache: bool = True,
    durations_path: str | Path | None = None,
) -> LMCorpus:
    """Join ``data_dir/{phones,utt2spk,utt2lang}`` with ``codes_scp`` into an :class:`LMCorpus`.

    Utterances without codes (e.g. skipped as bad audio in stage 3), without phones, or with no
    frames are left out with a warning; phones missing from ``phone_table`` map to ``<unk>``.
    With ``durations_path``, utterances without durations are left out too (reason ``no
    durations``, e.g. fewer frames than phones) and ``corpus.durations`` is filled.

    Args:
        data_dir: a Kaldi data dir after stage 2 (has ``phones``).
        codes_scp: ``dump/<set>/codes.scp`` of stage 3.
        phone_table: ``dump/tokens.txt`` loaded.
        cache: read all codes into memory once (see the module docstring).
        durations_path: ``dump/<set>/durations`` (:mod:`speechkit.align.durations`), or None.

    Raises:
        DataError: missing files, an unknown language, durations that do not fit an utterance's
            phones and frames, or no usable utterance.
    """
    data_dir, codes_scp = Path(data_dir), Path(codes_scp)
    if not (data_dir / "phones").is_file():
        raise DataError(f"{data_dir / 'phones'} does not exist; run stage 2 (speechkit.bin.phonemize) first.")
    phone_text = read_table(data_dir / "phones", allow_empty_value=True)
    utt2spk = read_table(data_dir / "utt2spk")
    utt2lang = read_table(data_dir / "utt2lang")
    reader = load_codes(codes_scp)
    in_codes = set(reader)
    frames_path = codes_scp.parent / UTT2NUM_FRAMES
    if cache:
        codes: Mapping[str, torch.Tensor] = {utt: _compact(reader[utt]) for utt in sorted(in_codes & set(utt2spk))}
        frame_table = {utt: int(matrix.shape[1]) for utt, matrix in codes.items()}
    else:
        codes = reader
        frame_table = (read_utt2num_frames(frames_path) if frames_path.is_file()
                       else {utt: int(reader[utt].shape[1]) for utt in in_codes})
    duration_table = read_durations(durations_path) if durations_path is not None else None
    dropped = defaultdict(list)
    corpus = LMCorpus(str(data_dir), [], [], [], [], [], [], codes, [] if duration_table is not None else None)
    unknown: set[str] = set()
    for utt in sorted(utt2spk):
        tokens = phone_text.get(utt, "").split()
        if utt not in in_codes:
            dropped["no codes"].append(utt)
        elif not tokens:
            dropped["no phones"].append(utt)
        elif frame_table.get(utt, 0) <= 0:
            dropped["no frames"].append(utt)
        elif duration_table is not None and utt not in duration_table:
            dropped["no durations"].append(utt)
        else:
            if utt not in utt2lang:
                raise DataError(f"{data_dir / 'utt2lang'} has no entry for {utt!r}; re-run stage 1.")
            unknown.update(phone_table.unknown(tokens))
            corpus.utts.append(utt)
            corpus.speakers.append(utt2spk[utt])
            corpus.langs.append(utt2lang[utt])
            corpus.phones.append(torch.tensor(phone_table.encode(tokens), dtype=torch.long))
            corpus.phone_langs.append(torch.tensor(phone_table.language_ids(tokens), dtype=torch.long))
            corpus.num_frames.append(frame_table[utt])
            if duration_table is not None and corpus.durations is not None:
                check_durations(utt, duration_table[utt], len(tokens), frame_table[utt])
                corpus.durations.append(duration_table[utt])
    for reason, utts in dropped.items():
        log.warning("%s: %d utterance(s) left out (%s), e.g. %s", data_dir, len(utts), reason, utts[0])
    if unknown:
        log.warning("%s: %d phone(s) not in the phone table map to <unk>: %s", data_dir, len(unknown),
                    " ".join(sorted(unknown)[:20]))
    if not corpus.utts:
        raise DataError(f"{data_dir} and {codes_scp} share no utterance with phones and codes; "
                        "re-run stages 2 and 3 for this set.")
    for lang in set(corpus.langs):
        language_id(lang)  # an unknown language fails here, naming the known ones
    return corpus


def _compact(codes: torch.Tensor) -> torch.Tensor:
    """codes: LongTensor[L, T] -> the same ids in int16 when they fit (4x less memory), else int32."""
    small = torch.int16 if codes.numel() == 0 or int(codes.max()) <= torch.iinfo(torch.int16).max else torch.int32
    return codes.to(small)


@dataclasses.dataclass
class PairingConfig:
    """How a target utterance gets its prompt.

    Attributes:
        cross_lingual_prompt_prob: probability of drawing the prompt from the speaker's
            utterances in another language (else the same language).
        max_prompt_frames: crop prompts longer than this to a random window of this many frames
            (0 = whole utterances). Only safe where the prompt carries no transcript (NAR): an
            AR prompt's transcript would no longer match its audio.
        seed: base seed of the draws.
    """

    cross_lingual_prompt_prob: float = 0.5
    max_prompt_frames: int = 0
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` on out-of-range values."""
        if not 0.0 <= self.cross_lingual_prompt_prob <= 1.0:
            raise ConfigError(f"cross_lingual_prompt_prob must be in [0, 1], got {self.cross_lingual_prompt_prob}.")
        if self.max_prompt_frames < 0:
            raise ConfigError(f"max_prompt_frames must be >= 0, got {self.max_prompt_frames}.")


class PromptPairing:
    """Draws, for target ``index`` of a corpus in ``epoch``, another utterance of its speaker.

    Only utterances whose speaker has at least two utterances can be targets
    (:attr:`targets`); the others are left out with a warning.
    """

    def __init__(self, corpus: LMCorpus, config: PairingConfig) -> None:
        config.validate()
        self.corpus, self.config = corpus, config
        by_speaker_lang: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for index, (speaker, lang) in enumerate(zip(corpus.speakers, corpus.langs)):
            by_speaker_lang[speaker][lang].append(index)
        self._pools = by_speaker_lang
        self.targets = [i for i, spk in enumerate(corpus.speakers) if sum(map(len, by_speaker_lang[spk].values())) > 1]
        alone = sorted(set(corpus.speakers) - {corpus.speakers[i] for i in self.targets})
        if alone:
            log.warning("%s: speaker(s) with a single utterance cannot be paired and are left out: %s",
                        corpus.name, " ".join(alone[:10]))
        if not self.targets:
            raise DataError(f"{corpus.name}: no speaker has two utterances, so no (prompt, target) pair exists.")

    def prompt_for(self, target: int, epoch: int) -> tuple[int, int, int]:
        """``(prompt corpus index, crop start, crop end)`` for corpus index ``target`` in ``epoch``."""
        rng = np.random.default_rng([self.config.seed, epoch, target])
        speaker, lang = self.corpus.speakers[target], self.corpus.langs[target]
        same = [i for i in self._pools[speaker][lang] if i != target]
        other = [i for pool_lang, pool in sorted(self._pools[speaker].items()) if pool_lang != lang for i in pool]
        want_other = rng.random() < self.config.cross_lingual_prompt_prob
        pool = other if (want_other and other) or not same else same
        prompt = pool[int(rng.integers(len(pool)))]
        frames, limit = self.corpus.num_frames[prompt], self.config.max_prompt_frames
        if limit and frames > limit:
            start = int(rng.integers(frames - limit + 1))
            return prompt, start, start + limit
        return prompt, 0, frames

    def typical_prompt_frames(self, target: int) -> int:
        """Mean (cropped) frames of the target's speaker's utterances: the prompt part of a batch length."""
        pools = self._pools[self.corpus.speakers[target]].values()
        frames = [self.corpus.num_frames[i] for pool in pools for i in pool]
        if self.config.max_prompt_frames:
            frames = [min(f, self.config.max_prompt_frames) for f in frames]
        return int(round(sum(frames) / len(frames)))

    def typical_prompt_phones(self, target: int) -> int:
        """Mean phone count of the target's speaker's utterances."""
        pools = self._pools[self.corpus.speakers[target]].values()
        counts = [len(self.corpus.phones[i]) for pool in pools for i in pool]
        return int(round(sum(counts) / len(counts)))


def _split_key(key: ItemKey) -> tuple[int, int]:
    if isinstance(key, tuple):
        epoch, index = key
        return int(epoch), int(index)
    return 0, int(key)


class _PairDataset(Dataset):
    """Shared part of the AR and NAR pair datasets: targets, pairing, lengths."""

    def __init__(self, corpus: LMCorpus, pairing: PairingConfig) -> None:
        self.corpus = corpus
        self.pairing = PromptPairing(corpus, pairing)
        self.targets = self.pairing.targets

    def __len__(self) -> int:
        return len(self.targets)

    def pair(self, key: ItemKey) -> tuple[int, int, int, int]:
        """``(target corpus index, prompt corpus index, crop start, crop end)`` of dataset ``key``."""
        epoch, index = _split_key(key)
        target = self.targets[index]
        return (target, *self.pairing.prompt_for(target, epoch))

    def utt_pair(self, key: ItemKey) -> tuple[str, str]:
        """``(target utt, prompt utt)`` of dataset ``key``."""
        target, prompt, _, _ = self.pair(key)
        return self.corpus.utts[target], self.corpus.utts[prompt]


class ARPairDataset(_PairDataset):
    """AR training items (see the module docstring); ``lengths`` are for the bucket sampler.

    Args:
        corpus: the set.
        pairing: prompt choice options.
        frames_per_step: the AR model's frames per step ``k``; the first ``prompt_len % k`` prompt
            frames are dropped so the target starts on a step boundary, as at inference.
    """

    def __init__(self, corpus: LMCorpus, pairing: PairingConfig, frames_per_step: int = 1) -> None:
        super().__init__(corpus, pairing)
        if frames_per_step < 1:
            raise ConfigError(f"frames_per_step must be >= 1, got {frames_per_step}.")
        self.frames_per_step = frames_per_step
        #: approximate sequence length per item: phones (prompt + target) + frames (prompt + target)
        self.lengths = [
            self.pairing.typical_prompt_phones(t) + len(corpus.phones[t])
            + self.pairing.typical_prompt_frames(t) + corpus.num_frames[t]
            for t in self.targets
        ]

    def __getitem__(self, key: ItemKey) -> dict[str, Any]:
        """-> ``phones``/``phone_langs`` LongTensor[Pp + Pt], ``codes`` LongTensor[Tp + T] (level 1),
        ``prompt_len``, ``prompt_phone_len``, ``code_lang`` (ints); with ``corpus.durations`` also
        ``durations`` LongTensor[Pp + Pt] (0 per prompt phone, then the target's, summing to T)."""
        target, prompt, start, end = self.pair(key)
        start += (end - start) % self.frames_per_step
        corpus = self.corpus
        prompt_codes = corpus.codes_of(prompt)[0, start:end]
        item = {
            "phones": torch.cat([corpus.phones[prompt], corpus.phones[target]]),
            "phone_langs": torch.cat([corpus.phone_langs[prompt], corpus.phone_langs[target]]),
            "codes": torch.cat([prompt_codes, corpus.codes_of(target)[0]]),
            "prompt_len": int(prompt_codes.shape[0]),
            "prompt_phone_len": int(corpus.phones[prompt].shape[0]),
            "code_lang": language_id(corpus.langs[target]),
        }
        if corpus.durations is not None:
            add_durations(item, corpus.durations[target], num_prompt_phones=len(corpus.phones[prompt]))
        return item


class NARPairDataset(_PairDataset):
    """NAR training items (see the module docstring); ``lengths`` are for the bucket sampler."""

    def __init__(self, corpus: LMCorpus, pairing: PairingConfig) -> None:
        super().__init__(corpus, pairing)
        #: approximate sequence length per item: target phones + prompt frames + target frames
        self.lengths = [
            len(corpus.phones[t]) + self.pairing.typical_prompt_frames(t) + corpus.num_frames[t]
            for t in self.targets
        ]

    def __getitem__(self, key: ItemKey) -> dict[str, Any]:
        """-> ``phones``/``phone_langs`` LongTensor[P] (target), ``prompt_codes`` LongTensor[L, Tp],
        ``codes`` LongTensor[L, T]; with ``corpus.durations`` also ``frame_phones`` LongTensor[T]
        (the index among ``phones`` of each frame's phone)."""
        target, prompt, start, end = self.pair(key)
        corpus = self.corpus
        item = {
            "phones": corpus.phones[target],
            "phone_langs": corpus.phone_langs[target],
            "prompt_codes": corpus.codes_of(prompt)[:, start:end],
            "codes": corpus.codes_of(target),
        }
        if corpus.durations is not None:
            durations = torch.tensor(corpus.durations[target], dtype=torch.long)
            item["frame_phones"] = torch.repeat_interleave(torch.arange(len(durations)), durations)
        return item


def collate_ar(items: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """AR items -> the batch of :meth:`speechkit.interfaces.lm.ARLanguageModel.forward`:
    ``phones``, ``phone_langs`` LongTensor[B, P] (padded with 0), ``phone_lens`` [B], ``codes``
    LongTensor[B, T] (padded with 0), ``code_lens`` [B], ``code_langs`` [B], ``prompt_lens`` [B],
    plus ``prompt_phone_lens`` [B] (prompt transcript phones at the start of ``phones``) and, when
    the items carry them, ``durations`` LongTensor[B, P] (padded with 0)."""
    phones, phone_lens = pad_sequences([item["phones"] for item in items])
    phone_langs, _ = pad_sequences([item["phone_langs"] for item in items])
    codes, code_lens = pad_sequences([item["codes"] for item in items])
    batch = {
        "phones": phones,
        "phone_lens": phone_lens,
        "phone_langs": phone_langs,
        "codes": codes,
        "code_lens": code_lens,
        "code_langs": torch.tensor([item["code_lang"] for item in items], dtype=torch.long),
        "prompt_lens": torch.tensor([item["prompt_len"] for item in items], dtype=torch.long),
        "prompt_phone_lens": torch.tensor([item["prompt_phone_len"] for item in items], dtype=torch.long),
    }
    _pad_optional(batch, items, "durations", "collate_ar")
    return batch


def collate_nar(items: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """NAR items -> the batch of :meth:`speechkit.interfaces.lm.NARLanguageModel.forward`:
    ``phones``, ``phone_langs`` LongTensor[B, P], ``phone_lens`` [B], ``prompt_codes``
    LongTensor[B, L, Tp], ``prompt_lens`` [B], ``codes`` LongTensor[B, L, T], ``code_lens`` [B]
    (all right-padded with 0) and, when the items carry them, ``frame_phones`` LongTensor[B, T]."""
    phones, phone_lens = pad_sequences([item["phones"] for item in items])
    phone_langs, _ = pad_sequences([item["phone_langs"] for item in items])
    prompt_codes, prompt_lens = pad_sequences([item["prompt_codes"] for item in items])
    codes, code_lens = pad_sequences([item["codes"] for item in items])
    batch = {
        "phones": phones,
        "phone_lens": phone_lens,
        "phone_langs": phone_langs,
        "prompt_codes": prompt_codes,
        "prompt_lens": prompt_lens,
        "codes": codes,
        "code_lens": code_lens,
    }
    _pad_optional(batch, items, "frame_phones", "collate_nar")
    return batch


def _pad_optional(batch: dict[str, torch.Tensor], items: Sequence[Mapping[str, Any]], key: str, caller: str) -> None:
    """Add ``batch[key]`` (right-padded with 0) when the items carry ``key`` (all or none of them)."""
    carrying = sum(key in item for item in items)
    if carrying:
        if carrying != len(items):
            raise DataError(f"{caller}: some items carry {key} and some do not; load every set with durations.")
        batch[key], _ = pad_sequences([item[key] for item in items])


class EpochIndexedBatchSampler(Sampler[list[tuple[int, int]]]):
    """Wraps a batch sampler (e.g. :class:`~speechkit.data.sampler.BucketBatchSampler`) so each index
    comes tagged with the epoch, ``(epoch, index)``: the pair datasets then draw a new prompt per
    epoch, reproducibly (also in DataLoader workers and after a resume).

    ``set_epoch(epoch, start_batch)`` is forwarded; other attributes (``num_replicas``, ...) are
    the wrapped sampler's.
    """

    def __init__(self, batch_sampler: Any) -> None:
        self.batch_sampler = batch_sampler
        self.epoch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Use ``epoch``'s plan and prompts; skip this rank's first ``start_batch`` batches."""
        self.epoch = int(epoch)
        self.batch_sampler.set_epoch(epoch, start_batch=start_batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.batch_sampler:
            yield [(self.epoch, int(index)) for index in batch]

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __getattr__(self, name: str) -> Any:
        if name == "batch_sampler":  # not yet set (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.batch_sampler, name)
