"""Kaldi-style data directories: read, write and validate.

A data dir holds one utterance per line in sorted text tables keyed by utterance id:

==============  ===============================================  ========
file            line                                             required
==============  ===============================================  ========
wav.scp         ``<utt> <path>``                                 yes
text            ``<utt> <transcript>``                           yes
utt2spk         ``<utt> <speaker>``                              yes
spk2utt         ``<speaker> <utt> <utt> ...``                    yes
utt2lang        ``<utt> <lang>`` (``en``, ``zh``)                yes
utt2pair        ``<utt> <sentence-pair id>``                     no
translation     ``<utt> <text of the same sentence in the other language>``  no
utt2dur         ``<utt> <seconds>``                              no
phones          ``<utt> <lang:phone> ...`` (stage 2)             no
==============  ===============================================  ========

Utterance ids start with the speaker id (``<spk>-...``) so that sorting by utterance also groups
speakers, as Kaldi expects.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Mapping

from speechkit.errors import DataError
from speechkit.utils.fs import atomic_write_text

REQUIRED_FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2lang")
OPTIONAL_TABLES = ("utt2pair", "translation", "utt2dur", "phones")
KNOWN_LANGS = ("en", "zh")


def read_table(path: str | Path, *, allow_empty_value: bool = False) -> dict[str, str]:
    """Read ``<key> <value...>`` lines into an ordered dict; errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist.")
    table: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            key, _, value = line.partition(" ")
            value = value.strip()
            if not value and not allow_empty_value:
                raise DataError(f"{path}:{number}: key {key!r} has no value.")
            if key in table:
                raise DataError(f"{path}:{number}: duplicate key {key!r}.")
            table[key] = value
    return table


def write_table(path: str | Path, table: Mapping[str, str]) -> None:
    """Write a table sorted by key (C locale order, as Kaldi's ``sort``), atomically."""
    lines = [f"{key} {table[key]}\n" for key in sorted(table)]
    atomic_write_text(Path(path), "".join(lines))


@dataclasses.dataclass
class DataDir:
    """In-memory view of a data dir; tables map utterance id -> value."""

    path: Path
    wav_scp: dict[str, str]
    text: dict[str, str]
    utt2spk: dict[str, str]
    utt2lang: dict[str, str]
    extra: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    @property
    def utts(self) -> list[str]:
        return sorted(self.wav_scp)

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        mapping: dict[str, list[str]] = defaultdict(list)
        for utt in self.utts:
            mapping[self.utt2spk[utt]].append(utt)
        return dict(mapping)

    @classmethod
    def load(cls, path: str | Path, validate: bool = True) -> "DataDir":
        """Read ``path``; with ``validate`` run :func:`validate_datadir` first."""
        path = Path(path)
        if validate:
            validate_datadir(path, check_audio=False)
        extra = {
            name: read_table(path / name, allow_empty_value=True)
            for name in OPTIONAL_TABLES
            if (path / name).is_file()
        }
        return cls(
            path,
            read_table(path / "wav.scp"),
            read_table(path / "text"),
            read_table(path / "utt2spk"),
            read_table(path / "utt2lang"),
            extra,
        )

    def save(self) -> None:
        """Write every table (and spk2utt) into ``self.path``."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_table(self.path / "wav.scp", self.wav_scp)
        write_table(self.path / "text", self.text)
        write_table(self.path / "utt2spk", self.utt2spk)
        write_table(self.path / "utt2lang", self.utt2lang)
        write_table(self.path / "spk2utt", {s: " ".join(u) for s, u in self.spk2utt.items()})
        for name, table in self.extra.items():
            write_table(self.path / name, table)


def _check_sorted(path: Path, keys: Iterable[str], problems: list[str]) -> None:
    keys = list(keys)
    if keys != sorted(keys):
        problems.append(f"{path.name} is not sorted by key (sort it with LC_ALL=C sort).")


def validate_datadir(
    path: str | Path,
    *,
    check_audio: bool = True,
    sample_rate: int | None = None,
    languages: Iterable[str] = KNOWN_LANGS,
) -> None:
    """Check a data dir and raise one :class:`DataError` listing every problem found.

    Checks: required files present; tables sorted, without duplicates, with identical key sets;
    utterance ids prefixed by their speaker; spk2utt consistent with utt2spk; languages known;
    with ``check_audio``, every wav exists and is readable (and at ``sample_rate`` if given).
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"Data dir {path} does not exist; run stage 1 (local/data.sh) first.")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise DataError(f"Data dir {path} lacks {', '.join(missing)}; re-run stage 1 to rebuild it.")
    problems: list[str] = []
    tables = {name: read_table(path / name) for name in ("wav.scp", "text", "utt2spk", "utt2lang")}
    for name in OPTIONAL_TABLES:
        if (path / name).is_file():
            tables[name] = read_table(path / name, allow_empty_value=True)
    reference = set(tables["wav.scp"])
    if not reference:
        problems.append("wav.scp is empty.")
    for name, table in tables.items():
        _check_sorted(path / name, _raw_keys(path / name), problems)
        keys = set(table)
        if keys != reference:
            extra, lacking = sorted(keys - reference)[:3], sorted(reference - keys)[:3]
            problems.append(
                f"{name} and wav.scp disagree on utterances (only in {name}: {extra}; missing: {lacking})."
            )
    for utt, spk in tables["utt2spk"].items():
        if not utt.startswith(spk):
            problems.append(f"utterance {utt!r} does not start with its speaker id {spk!r}.")
            break
    spk2utt = read_table(path / "spk2utt")
    expected: dict[str, list[str]] = defaultdict(list)
    for utt in sorted(tables["utt2spk"]):
        expected[tables["utt2spk"][utt]].append(utt)
    if {s: u.split() for s, u in spk2utt.items()} != dict(expected):
        problems.append("spk2utt does not match utt2spk (regenerate it from utt2spk).")
    allowed = set(languages)
    bad_langs = sorted({lang for lang in tables["utt2lang"].values() if lang not in allowed})
    if bad_langs:
        problems.append(f"utt2lang has unsupported languages {bad_langs}; supported: {sorted(allowed)}.")
    empty_text = [utt for utt, text in tables["text"].items() if not text.strip()]
    if empty_text:
        problems.append(f"text is empty for {empty_text[:3]}.")
    if check_audio and not problems:
        problems.extend(_check_audio(tables["wav.scp"], sample_rate))
    if problems:
        listing = "\n  - ".join(problems[:20])
        raise DataError(f"Data dir {path} is invalid:\n  - {listing}")


def _raw_keys(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [line.split(" ", 1)[0] for line in handle if line.strip()]


def _check_audio(wav_scp: Mapping[str, str], sample_rate: int | None) -> list[str]:
    from speechkit.audio.io import audio_info
    from speechkit.errors import AudioError

    problems: list[str] = []
    for utt, wav_path in wav_scp.items():
        try:
            info = audio_info(wav_path)
        except AudioError as error:
            problems.append(f"{utt}: {error}")
            continue
        if sample_rate is not None and info.sample_rate != sample_rate:
            problems.append(f"{utt}: {wav_path} is at {info.sample_rate} Hz, expected {sample_rate} Hz.")
        if info.frames == 0:
            problems.append(f"{utt}: {wav_path} is empty.")
        if len(problems) >= 20:
            break
    return problems
