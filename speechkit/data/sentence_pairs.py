"""Real Chinese-English sentence pairs for the embedded corpus, and their split into sets.

The text comes from the ``hsk-sentences-audio`` package (CC-BY-SA-4.0): 4,354 HSK 1-6 sentences
with an English translation. Pairs are held out for dev/test only when neither side occurs in any
other pair, so no dev or test sentence (in either language) is ever seen in training.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from speechkit.errors import ConfigError, DataError, MissingDependencyError
from speechkit.utils.fs import atomic_open


@dataclasses.dataclass(frozen=True)
class SentencePair:
    """One parallel sentence.

    Args:
        pair_id: corpus-wide id, e.g. ``hsk01234`` (position in the source file).
        source_id: the id in the source data, e.g. ``hsk3-0042``.
        zh: the Chinese sentence (simplified characters, as in the source).
        en: its English translation, as in the source.
    """

    pair_id: str
    source_id: str
    zh: str
    en: str

    def text(self, lang: str) -> str:
        """The sentence in ``lang`` (``"zh"`` or ``"en"``)."""
        if lang == "zh":
            return self.zh
        if lang == "en":
            return self.en
        raise ConfigError(f"Unknown language {lang!r}; sentence pairs have 'zh' and 'en'.")


def hsk_sentences_path() -> Path:
    """Path of ``sentences.json`` inside the installed ``hsk-sentences-audio`` package."""
    try:
        import hsk_sentences_audio
    except ImportError as error:
        raise MissingDependencyError(
            "The embedded corpus needs the `hsk-sentences-audio` package for its sentence pairs: "
            "`pip install hsk-sentences-audio` (or `pip install -e .[text]`, or run tools/install.sh)."
        ) from error
    path = Path(hsk_sentences_audio.__file__).parent / "data" / "sentences.json"
    if not path.is_file():
        raise MissingDependencyError(f"{path} is missing; reinstall with `pip install --force-reinstall hsk-sentences-audio`.")
    return path


def _single_line(text: str) -> str:
    """Collapse whitespace runs (a newline would break a Kaldi table); nothing else changes."""
    return " ".join(text.split())


def load_sentence_pairs(path: str | Path | None = None) -> list[SentencePair]:
    """Read HSK-format sentences (``[{"id", "chinese", "translation": {"en"}}, ...]``).

    Args:
        path: a JSON file in that format; ``None`` uses the ``hsk-sentences-audio`` package's.

    Raises:
        DataError: the file is not a list of such records, or a record lacks text.
    """
    path = Path(path) if path else hsk_sentences_path()
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"Cannot read sentence pairs from {path}: {error}") from error
    if not isinstance(records, list) or not records:
        raise DataError(f"{path} must hold a non-empty JSON list of sentence records.")
    width = max(5, len(str(len(records) - 1)))
    pairs = []
    for index, record in enumerate(records):
        try:
            zh = _single_line(record["chinese"])
            en = _single_line(record["translation"]["en"])
        except (KeyError, TypeError) as error:
            raise DataError(f"{path}: record {index} lacks 'chinese' or 'translation.en' ({error}).") from error
        if not zh or not en:
            raise DataError(f"{path}: record {index} ({record.get('id', '?')}) has an empty sentence.")
        pairs.append(SentencePair(f"hsk{index:0{width}d}", str(record.get("id", index)), zh, en))
    return pairs


def pairs_digest(pairs: Sequence[SentencePair]) -> str:
    """A short hash of all pair texts (part of the corpus fingerprint)."""
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(f"{pair.pair_id}\t{pair.zh}\t{pair.en}\n".encode())
    return digest.hexdigest()[:16]


def split_pairs(
    pairs: Sequence[SentencePair], *, dev_pairs: int, test_pairs: int, seed: int
) -> dict[str, list[SentencePair]]:
    """Split pairs into ``train``/``dev``/``test`` pools, each pool in a seeded random order.

    Only pairs whose Chinese and English both occur once in the whole set can be held out, so a
    duplicated translation never leaks a dev/test sentence into training.
    """
    if dev_pairs < 0 or test_pairs < 0:
        raise ConfigError(f"corpus.dev_pairs and corpus.test_pairs must be >= 0, got {dev_pairs}, {test_pairs}.")
    zh_counts = collections.Counter(pair.zh for pair in pairs)
    en_counts = collections.Counter(pair.en for pair in pairs)
    rng = np.random.default_rng(seed)
    order = [pairs[i] for i in rng.permutation(len(pairs))]
    unique = [p for p in order if zh_counts[p.zh] == 1 and en_counts[p.en] == 1]
    if dev_pairs + test_pairs > len(unique):
        raise ConfigError(
            f"corpus.dev_pairs + corpus.test_pairs = {dev_pairs + test_pairs} exceeds the {len(unique)} "
            "sentence pairs that can be held out; lower them."
        )
    test, dev = unique[:test_pairs], unique[test_pairs : test_pairs + dev_pairs]
    held_out = {p.pair_id for p in test + dev}
    train = [p for p in order if p.pair_id not in held_out]
    return {"train": train, "dev": dev, "test": test}


def assign_pairs(
    pool: Sequence[SentencePair], speaker_ids: Sequence[str], pairs_per_speaker: int
) -> dict[str, list[SentencePair]]:
    """Give each speaker ``pairs_per_speaker`` distinct pairs, walking the pool round-robin.

    Consecutive speakers take consecutive slices of ``pool`` (wrapping around), so the pool is
    covered as evenly as possible and a speaker never gets the same pair twice.
    """
    if not speaker_ids:
        return {}
    if pairs_per_speaker < 1:
        raise ConfigError(f"pairs per speaker must be >= 1, got {pairs_per_speaker}.")
    if pairs_per_speaker > len(pool):
        raise ConfigError(
            f"{pairs_per_speaker} pairs per speaker requested but the pool has only {len(pool)} pairs; "
            "lower the pairs per speaker or raise corpus.dev_pairs/test_pairs."
        )
    return {
        speaker: [pool[(number * pairs_per_speaker + j) % len(pool)] for j in range(pairs_per_speaker)]
        for number, speaker in enumerate(speaker_ids)
    }


def write_pairs_tsv(path: str | Path, pools: Mapping[str, Sequence[SentencePair]]) -> None:
    """Write ``pair split source_id zh en`` rows for every pair of every pool (tab-separated)."""
    rows = sorted((p.pair_id, split, p.source_id, p.zh, p.en) for split, pool in pools.items() for p in pool)
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(("pair", "split", "source_id", "zh", "en"))
        writer.writerows(rows)
