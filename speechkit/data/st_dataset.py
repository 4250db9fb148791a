"""Training items for the speech recognition & translation frontend (stage 6): ASR, ST and MT.

Inputs of one set: ``data/<set>/{wav.scp,phones,utt2lang}`` (stages 1-2), ``data/<set>/translation``
(the same sentence in the other language), ``dump/tokens.txt``. Three tasks share one model:

* ``asr``: speech -> the utterance's own phones (decoder target language = source language);
* ``st``: speech -> phones of its ``translation`` (target language from ``translation_langs``);
* ``mt``: text only, source phones -> translation phones (the paper's MT pre-training task),
  one item per distinct (source phones, target phones) pair, since many speakers read one text.

Every item carries the utterance's phones as ``source_phones`` (the CTC target of speech items,
the encoder input of MT items). The task mix is set by weights (``st_train.tasks``): a
weight ``w`` puts ``floor(w)`` copies of every eligible item in the item list plus a seeded random
``w - floor(w)`` fraction of them, so ``{asr: 1, st: 1, mt: 0.5}`` trains on every utterance as
ASR and ST and on half the text pairs as MT. The list is fixed for a run, so the trainer's
resume replays it exactly.

Translation phones: stage 2 phonemizes ``text`` only. A translation whose exact text is the
``text`` of an utterance of the same set in the target language takes that utterance's phones (the
embedded corpus has every pair read in both languages, so this covers it); the rest are phonemized
with the recipe's frontend. Both are cached in ``dump/<set>/translation_phones``.

Features: log-mel fbank from the model's own ``featurize`` are computed once into
``dump/<set>/fbank/feats.<i>.{ark,scp}`` (float16 numpy records, ``shard_size`` utterances per
shard, each shard atomic with a done-marker, so a killed run resumes at the first unfinished
shard) and merged into ``feats.scp`` + ``utt2num_frames``. At 100 frames/s x 80 mels x 2 bytes
one hour is ~58 MB, so the dataset keeps all features in memory when the set fits
``max_memory_mb`` (the default corpus, ~4 h, is ~230 MB) and reads them from the arks otherwise.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from speechkit.audio.io import load_audio
from speechkit.data.collate import pad_sequences
from speechkit.data.datadir import read_table, write_table
from speechkit.data.tokens import merge_scps, read_utt2num_frames, split_into_shards, write_utt2num_frames
from speechkit.errors import AudioError, ConfigError, DataError
from speechkit.text.languages import language_id
from speechkit.text.phone_table import PhoneTable
from speechkit.utils.fs import atomic_open, atomic_write_text
from speechkit.utils.stage import StageMarker, fingerprint
from speechkit.utils.threads import one_torch_thread

log = logging.getLogger(__name__)

TASKS = ("asr", "st", "mt")
FBANK_DIR = "fbank"
FEATS_SCP = "feats.scp"
UTT2NUM_FRAMES = "utt2num_frames"
TRANSLATION_PHONES = "translation_phones"
#: Featurize: (wav FloatTensor[S], sample_rate) -> FloatTensor[T, F], e.g. ``TransformerST.featurize``.
Featurizer = Callable[[torch.Tensor, int], torch.Tensor]


# -- feature cache ------------------------------------------------------------------------------
def feature_key(featurize: Featurizer, sample_rate: int = 16000) -> str:
    """Fingerprint of a featurizer: a hash of its features of a fixed probe signal, so any change
    of the feature layout (rate, mels, window, normalisation) invalidates cached features."""
    time = torch.arange(sample_rate // 2, dtype=torch.float32) / sample_rate
    probe = 0.3 * torch.sin(2 * math.pi * 440.0 * time) + 0.1 * torch.sin(2 * math.pi * 1250.0 * time)
    with one_torch_thread():  # deterministic, so every rank and every run computes the same key
        features = featurize(probe, sample_rate).detach().cpu().numpy().astype(np.float16)
    return hashlib.sha256(features.tobytes() + str(features.shape).encode()).hexdigest()[:16]


def feature_frame_rate(featurize: Featurizer, sample_rate: int = 16000) -> float:
    """Feature frames per second of ``featurize`` (measured on 2 s of a tone)."""
    time = torch.arange(2 * sample_rate, dtype=torch.float32) / sample_rate
    return featurize(0.3 * torch.sin(2 * math.pi * 440.0 * time), sample_rate).shape[0] / 2.0


def _write_feature_shard(entries: Sequence[tuple[str, str]], featurize: Featurizer, ark: Path, scp: Path,
                         frames_path: Path, progress: tqdm) -> list[tuple[str, str]]:
    """Featurize ``(utt, wav path)`` entries into one ark (written under a temporary name, then
    renamed) + scp + per-shard ``utt2num_frames``. Returns ``(utt, reason)`` of unreadable audio."""
    import kaldiio

    ark = ark.absolute()
    bad: list[tuple[str, str]] = []
    frames: dict[str, int] = {}
    scp_lines: list[str] = []
    with atomic_open(ark, "wb", encoding=None) as handle:
        for utt, wav_path in entries:
            progress.update(1)
            try:
                wav, rate = load_audio(wav_path)
                features = featurize(torch.from_numpy(wav), rate)  # [T, F]
            except AudioError as error:
                bad.append((utt, str(error)))
                continue
            matrix = np.ascontiguousarray(features.detach().cpu().numpy().astype(np.float16))
            offset = handle.tell() + len(f"{utt} ".encode())
            kaldiio.save_ark(handle, {utt: matrix}, write_function="numpy")
            scp_lines.append(f"{utt} {ark}:{offset}\n")
            frames[utt] = int(matrix.shape[0])
    atomic_write_text(scp, "".join(scp_lines))
    write_utt2num_frames(frames_path, frames)
    return bad


def _dump_shards(entries: Sequence[tuple[str, str]], sizes: Sequence[int], featurize: Featurizer, key: str,
                 out: Path, desc: str) -> tuple[list[dict[str, Path]], list[tuple[str, str]]]:
    """Write (or keep, when done) one shard per ``sizes`` entry; returns the shards' paths and
    the ``(utt, reason)`` of unreadable audio."""
    bad: list[tuple[str, str]] = []
    shards = []
    start = 0
    with tqdm(total=len(entries), desc=desc, unit="utt", leave=False) as progress:
        for index, size in enumerate(sizes):
            shard_entries, start = entries[start:start + size], start + size
            paths = {suffix: out / f"feats.{index}.{suffix}" for suffix in ("ark", "scp", "utt2num_frames", "bad")}
            shards.append(paths)
            marker = StageMarker(out, f"feats.{index}", fingerprint(key, shard_entries))
            if marker.is_done() and all(paths[name].is_file() for name in ("ark", "scp", "utt2num_frames")):
                progress.update(len(shard_entries))
                bad.extend(read_table(paths["bad"]).items() if paths["bad"].is_file() else [])
                continue
            marker.clear()
            shard_bad = _write_feature_shard(shard_entries, featurize, paths["ark"], paths["scp"],
                                             paths["utt2num_frames"], progress)
            write_table(paths["bad"], dict(shard_bad))
            bad.extend(shard_bad)
            marker.mark_done(utts=len(shard_entries) - len(shard_bad))
    return shards, bad


def dump_features(data_dir: str | Path, set_dump_dir: str | Path, featurize: Featurizer, key: str,
                  *, shard_size: int = 1000) -> Path:
    """Compute fbank features of every utterance of ``data_dir/wav.scp`` into ``set_dump_dir/fbank``.

    Args:
        data_dir: Kaldi data dir (``wav.scp``).
        set_dump_dir: ``dump/<set>``; features go to its ``fbank/`` subdirectory.
        featurize: wav -> FloatTensor[T, F] (the model's ``featurize``).
        key: :func:`feature_key` of ``featurize`` (part of every done-marker).
        shard_size: utterances per shard (a killed run redoes at most one shard).

    Returns:
        The merged ``feats.scp`` (``utt2num_frames`` beside it; unreadable audio is skipped with a
        warning and listed in ``bad_utts``).
    """
    wav_scp = read_table(Path(data_dir) / "wav.scp")
    out = Path(set_dump_dir) / FBANK_DIR
    out.mkdir(parents=True, exist_ok=True)
    entries = sorted(wav_scp.items())
    chunks = split_into_shards([utt for utt, _ in entries], math.ceil(len(entries) / shard_size))
    set_marker = StageMarker(out, "feats", fingerprint(key, entries, shard_size))
    if set_marker.is_done() and (out / FEATS_SCP).is_file():
        return out / FEATS_SCP
    set_marker.clear()
    for stale in out.glob(".feats.*.ark.*.tmp"):  # arks of a killed run, never renamed
        stale.unlink()
    with one_torch_thread():
        shards, bad = _dump_shards(entries, [len(chunk) for chunk in chunks], featurize, key, out,
                                   f"fbank {Path(data_dir).name}")
    count = merge_scps([paths["scp"] for paths in shards], out / FEATS_SCP)
    frames: dict[str, int] = {}
    for paths in shards:
        frames.update(read_utt2num_frames(paths["utt2num_frames"]))
    write_utt2num_frames(out / UTT2NUM_FRAMES, frames)
    write_table(out / "bad_utts", dict(bad))
    for utt, reason in bad:
        log.warning("%s: no features for %s: %s", data_dir, utt, reason)
    set_marker.mark_done(utts=count, frames=sum(frames.values()), skipped=len(bad))
    log.info("%s: fbank of %d utterances (%.2f h) in %s", data_dir, count, sum(frames.values()) / 360000, out)
    return out / FEATS_SCP


# -- translation phones -------------------------------------------------------------------------
def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def translation_phones(data_dir: str | Path, set_dump_dir: str | Path, translation_langs: Mapping[str, str],
                       make_frontend: Callable[[], Any], frontend_key: str) -> dict[str, str]:
    """``utt -> "tok tok ..."`` phones of each utterance's ``translation`` (cached, see the module
    docstring). ``make_frontend()`` builds the recipe's frontend, only if some text needs it.

    Raises:
        DataError: no ``translation`` table, a language without a translation language, or
            translations that fail to phonemize (listed).
    """
    data_dir, cache = Path(data_dir), Path(set_dump_dir) / TRANSLATION_PHONES
    if not (data_dir / "translation").is_file():
        raise DataError(f"{data_dir}/translation does not exist; ST and MT need it. Train recognition only "
                        "with st_train.data.tasks={asr: 1, st: 0, mt: 0}.")
    tables = {name: data_dir / name for name in ("translation", "text", "phones", "utt2lang")}
    key = fingerprint(frontend_key, dict(translation_langs), {name: _file_digest(path) for name, path in tables.items()})
    marker = StageMarker(Path(set_dump_dir), TRANSLATION_PHONES, key)
    if marker.is_done() and cache.is_file():
        return read_table(cache)
    translations, texts = read_table(tables["translation"]), read_table(tables["text"])
    phones, utt2lang = read_table(tables["phones"], allow_empty_value=True), read_table(tables["utt2lang"])
    known = {(utt2lang[utt], texts[utt]): phones[utt] for utt in sorted(phones) if phones[utt] and utt in texts}
    result: dict[str, str] = {}
    to_phonemize: dict[tuple[str, str], list[str]] = {}
    for utt, text in translations.items():
        lang = utt2lang.get(utt)
        if lang not in translation_langs:
            raise DataError(f"{data_dir}: utterance {utt!r} has language {lang!r}, which "
                            f"st_train.data.translation_langs ({dict(translation_langs)}) does not map.")
        target = (translation_langs[lang], text)
        if target in known:
            result[utt] = known[target]
        else:
            to_phonemize.setdefault(target, []).append(utt)
    errors: list[str] = []
    if to_phonemize:
        frontend = make_frontend()
        for (lang, text), utts in tqdm(sorted(to_phonemize.items()), desc="phonemize translations", leave=False):
            try:
                tokens = " ".join(phone.token for phone in frontend.phonemize(text, lang))
            except Exception as error:  # the frontend's TextError and friends: report, do not drop
                errors.append(f"{utts[0]}: {error}")
                continue
            result.update({utt: tokens for utt in utts})
    if errors:
        raise DataError(f"{len(errors)} translations in {data_dir}/translation could not be phonemized:\n  "
                        + "\n  ".join(errors[:20]))
    write_table(cache, result)
    marker.mark_done(utterances=len(result), reused=len(result) - sum(map(len, to_phonemize.values())))
    return result


# -- corpus and dataset -------------------------------------------------------------------------
@dataclasses.dataclass
class STCorpus:
    """One set's utterances, index-aligned.

    Attributes:
        name: where it came from (messages).
        utts, langs: utterance ids (sorted) and their language codes.
        source: LongTensor[P] phone ids per utterance.
        target: LongTensor[Q] translation phone ids per utterance (None without a translation).
        target_langs: language code of each translation (None without one).
        num_frames: fbank frames per utterance.
        features: ``utt -> FloatTensor[T, F]`` (in memory, float16) or a lazy kaldiio reader.
    """

    name: str
    utts: list[str]
    langs: list[str]
    source: list[torch.Tensor]
    target: list[torch.Tensor | None]
    target_langs: list[str | None]
    num_frames: list[int]
    features: Mapping[str, Any]

    def __len__(self) -> int:
        return len(self.utts)

    def features_of(self, index: int) -> torch.Tensor:
        """features: FloatTensor[T, F] of utterance ``index``."""
        value = self.features[self.utts[index]]
        return (value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))).float()


def load_st_corpus(data_dir: str | Path, feats_scp: str | Path, table: PhoneTable,
                   translations: Mapping[str, str] | None, translation_langs: Mapping[str, str], *,
                   max_memory_mb: float = 2048.0, max_frames: int | None = None) -> STCorpus:
    """Join ``data_dir/{phones,utt2lang}``, the translation phones and the features.

    Utterances without features or phones, or longer than ``max_frames``, are left out (logged).

    Raises:
        DataError: missing stage outputs, or no usable utterance.
    """
    import kaldiio

    data_dir, feats_scp = Path(data_dir), Path(feats_scp)
    if not (data_dir / "phones").is_file():
        raise DataError(f"{data_dir / 'phones'} does not exist; run stage 2 (speechkit.bin.phonemize) first.")
    phones = read_table(data_dir / "phones", allow_empty_value=True)
    utt2lang = read_table(data_dir / "utt2lang")
    frames = read_utt2num_frames(feats_scp.parent / UTT2NUM_FRAMES)
    corpus = STCorpus(str(data_dir), [], [], [], [], [], [], {})
    dropped: dict[str, int] = {}
    for utt in sorted(frames):
        reason = ("no phones" if not phones.get(utt, "").split() else
                  "too long" if max_frames is not None and frames[utt] > max_frames else None)
        if reason:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        if utt not in utt2lang:
            raise DataError(f"{data_dir / 'utt2lang'} has no entry for {utt!r}; re-run stage 1.")
        corpus.utts.append(utt)
        corpus.langs.append(utt2lang[utt])
        corpus.source.append(torch.tensor(table.encode(phones[utt].split()), dtype=torch.long))
        target = (translations or {}).get(utt, "").split()
        corpus.target.append(torch.tensor(table.encode(target), dtype=torch.long) if target else None)
        corpus.target_langs.append(translation_langs.get(utt2lang[utt]) if target else None)
        corpus.num_frames.append(frames[utt])
    if dropped:
        log.warning("%s: left out %s", data_dir, ", ".join(f"{n} ({why})" for why, n in sorted(dropped.items())))
    if not corpus.utts:
        raise DataError(f"{data_dir}: no utterance has both phones and features ({feats_scp}).")
    reader = kaldiio.load_scp(str(feats_scp))
    megabytes = sum(corpus.num_frames) * 2 * np.asarray(reader[corpus.utts[0]]).shape[1] / 2**20
    if megabytes <= max_memory_mb:
        corpus.features = {utt: torch.from_numpy(np.asarray(reader[utt])) for utt in
                           tqdm(corpus.utts, desc=f"load fbank {data_dir.name}", leave=False)}
    else:
        log.info("%s: features (%.0f MB) exceed max_memory_mb=%.0f; reading them from %s",
                 data_dir, megabytes, max_memory_mb, feats_scp)
        corpus.features = reader
    return corpus


@dataclasses.dataclass(frozen=True)
class STItem:
    """One training item: ``task`` over utterance ``index`` (MT: the utterance carrying the text)."""

    task: str
    index: int


class STDataset(Dataset):
    """ASR/ST/MT items over an :class:`STCorpus` (see the module docstring for the mix).

    Args:
        corpus: the set.
        tasks: task -> weight.
        seed: draws the fractional part of the weights.
        mt_frames_per_phone: length of an MT item per source phone, in fbank-frame equivalents.
    """

    def __init__(self, corpus: STCorpus, tasks: Mapping[str, float], *, seed: int = 0,
                 mt_frames_per_phone: int = 4) -> None:
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown:
            raise ConfigError(f"unknown task(s) {unknown} in the task weights; tasks are {', '.join(TASKS)}.")
        if any(weight < 0 for weight in tasks.values()) or not any(weight > 0 for weight in tasks.values()):
            raise ConfigError(f"task weights must be >= 0 with at least one > 0, got {dict(tasks)}.")
        self.corpus = corpus
        self.mt_frames_per_phone = mt_frames_per_phone
        rng = np.random.default_rng(seed)
        self.items: list[STItem] = []
        for task in TASKS:
            weight = float(tasks.get(task, 0.0))
            eligible = self.eligible(task)
            if weight > 0 and not eligible:
                raise DataError(f"{corpus.name}: task {task!r} has weight {weight} but no item (no translations?).")
            copies, fraction = int(weight), weight - int(weight)
            chosen = eligible * copies
            if fraction > 0:
                picked = rng.choice(len(eligible), size=round(fraction * len(eligible)), replace=False)
                chosen += [eligible[i] for i in sorted(picked.tolist())]
            self.items.extend(STItem(task, index) for index in chosen)
        if not self.items:
            raise DataError(f"{corpus.name}: the task weights {dict(tasks)} select no item.")

    def eligible(self, task: str) -> list[int]:
        """Utterance indices that can serve ``task`` (MT: the first of each distinct text pair)."""
        corpus = self.corpus
        if task == "asr":
            return list(range(len(corpus)))
        with_target = [i for i in range(len(corpus)) if corpus.target[i] is not None]
        if task == "st":
            return with_target
        seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        distinct = []
        for index in with_target:
            pair = (tuple(corpus.source[index].tolist()), tuple(corpus.target[index].tolist()))  # type: ignore[union-attr]
            if pair not in seen:
                seen.add(pair)
                distinct.append(index)
        return distinct

    @property
    def lengths(self) -> list[int]:
        """Per item: fbank frames (speech) or source phones x ``mt_frames_per_phone`` (MT)."""
        corpus = self.corpus
        return [corpus.num_frames[item.index] if item.task != "mt"
                else len(corpus.source[item.index]) * self.mt_frames_per_phone for item in self.items]

    def task_counts(self) -> dict[str, int]:
        """Number of items per task."""
        counts = {task: 0 for task in TASKS}
        for item in self.items:
            counts[item.task] += 1
        return counts

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> dict[str, Any]:
        """``{"task", "utt", "features": FloatTensor[T, F] | None, "source": LongTensor[P],
        "target": LongTensor[Q], "target_lang": int}``."""
        item = self.items[position]
        corpus, index = self.corpus, item.index
        if item.task == "asr":
            target, target_lang = corpus.source[index], corpus.langs[index]
        else:
            target, target_lang = corpus.target[index], corpus.target_langs[index]
        return {
            "task": item.task,
            "utt": corpus.utts[index],
            "features": None if item.task == "mt" else corpus.features_of(index),
            "source": corpus.source[index],
            "target": target,
            "target_lang": language_id(target_lang),  # type: ignore[arg-type]
        }


def pad_features(features: Sequence[torch.Tensor | None], num_mels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """B features FloatTensor[T_b, F] (None = no speech, length 0) -> (FloatTensor[B, T, F]
    right-padded with 0, LongTensor[B] frames)."""
    present = [item for item in features if item is not None]
    dims = present[0].shape[1] if present else num_mels
    if dims is None:
        raise DataError("pad_features needs at least one feature matrix or num_mels.")
    padded, lengths = pad_sequences([item.T if item is not None else torch.zeros(dims, 0) for item in features])
    return padded.transpose(1, 2).contiguous(), lengths  # [B, F, T] -> [B, T, F]


def pad_phones(phones: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """B LongTensor[P_b] -> (LongTensor[B, P] right-padded with ``<pad>`` = 0, LongTensor[B])."""
    return pad_sequences(list(phones), padding_value=0)


def collate_st(items: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Items of :class:`STDataset` -> the ``transformer_st`` batch.

    Returns:
        ``source_phones`` LongTensor[B, P], ``source_lens`` LongTensor[B], ``target_phones``
        LongTensor[B, Q], ``target_lens``, ``target_langs`` LongTensor[B]; when any item has speech
        also ``features`` FloatTensor[B, T, F] and ``feature_lens`` LongTensor[B] (0 = MT item).
    """
    source, source_lens = pad_phones([item["source"] for item in items])
    target, target_lens = pad_phones([item["target"] for item in items])
    batch = {"source_phones": source, "source_lens": source_lens, "target_phones": target,
             "target_lens": target_lens,
             "target_langs": torch.tensor([item["target_lang"] for item in items], dtype=torch.long)}
    if any(item["features"] is not None for item in items):
        batch["features"], batch["feature_lens"] = pad_features([item["features"] for item in items])
    return batch
