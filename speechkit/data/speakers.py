"""Speaker design for the embedded corpus: distinct espeak-ng "speakers", split by speaker.

A speaker is an espeak-ng voice variant (its timbre: formants, base pitch, breathiness) with its
own pitch (``-p``) and speed (``-s``). The same settings are used for every language, so each
speaker speaks both English and Mandarin, which gives every cross-lingual output a same-speaker
reference in the target language (as the EMIME set does for the VALL-E X paper).

Test and dev speakers take their variants before the training speakers do, alternating female and
male, so held-out speakers use variants never heard in training whenever there are enough variants,
and every split has both genders.
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from speechkit.errors import ConfigError, DataError
from speechkit.utils.fs import atomic_open

#: Split names in the order speaker ids are numbered.
SPLITS = ("train", "dev", "test")


@dataclasses.dataclass(frozen=True)
class Speaker:
    """One synthetic speaker.

    Args:
        speaker_id: id used in data dirs, e.g. ``spk07`` (only ``[A-Za-z0-9_-]``).
        variant: espeak-ng voice variant, e.g. ``f3``.
        gender: ``"f"`` or ``"m"`` (from the variant list it came from).
        pitch: espeak-ng ``-p`` value (0-99).
        speed: espeak-ng ``-s`` value (words per minute).
        split: ``train``, ``dev`` or ``test``.
    """

    speaker_id: str
    variant: str
    gender: str
    pitch: int
    speed: int
    split: str


def _interleave_genders(
    female_variants: Sequence[str], male_variants: Sequence[str], count: int, rng: np.random.Generator
) -> list[tuple[str, str]]:
    """``count`` (variant, gender) pairs alternating f/m, each list shuffled, cycling when exhausted."""
    females = [str(v) for v in rng.permutation(list(female_variants))] if female_variants else []
    males = [str(v) for v in rng.permutation(list(male_variants))] if male_variants else []
    once: list[tuple[str, str]] = []
    for index in range(max(len(females), len(males))):
        if index < len(females):
            once.append((females[index], "f"))
        if index < len(males):
            once.append((males[index], "m"))
    if not once:
        raise ConfigError("corpus.female_variants and corpus.male_variants are both empty; list some espeak-ng variants.")
    return [once[index % len(once)] for index in range(count)]


def _spread(low: int, high: int, count: int, rng: np.random.Generator) -> list[int]:
    """``count`` integers spread evenly over [low, high], in random order."""
    values = np.rint(np.linspace(low, high, count)).astype(int) if count > 1 else np.array([(low + high) // 2])
    return [int(v) for v in rng.permutation(values)]


def design_speakers(
    *,
    num_speakers: Mapping[str, int],
    female_variants: Sequence[str],
    male_variants: Sequence[str],
    pitch_range: tuple[int, int],
    speed_range: tuple[int, int],
    seed: int,
) -> list[Speaker]:
    """Design the corpus speakers, deterministically for a given ``seed``.

    Args:
        num_speakers: speakers per split, e.g. ``{"train": 24, "dev": 4, "test": 4}``.
        female_variants, male_variants: espeak-ng variants to draw timbres from.
        pitch_range, speed_range: inclusive ranges that pitches and speeds are spread over.

    Returns:
        Speakers ``spk01, spk02, ...`` numbered train first, then dev, then test.
    """
    unknown = sorted(set(num_speakers) - set(SPLITS))
    if unknown:
        raise ConfigError(f"Unknown split(s) {unknown}; speakers are split into {list(SPLITS)}.")
    counts = {split: int(num_speakers.get(split, 0)) for split in SPLITS}
    if any(count < 0 for count in counts.values()) or counts["train"] < 1:
        raise ConfigError(f"Speaker counts must be >= 0 with at least one training speaker, got {counts}.")
    for name, (low, high) in (("pitch_range", pitch_range), ("speed_range", speed_range)):
        if low > high:
            raise ConfigError(f"corpus.{name} must be [low, high] with low <= high, got {[low, high]}.")
    rng = np.random.default_rng(seed)
    total = sum(counts.values())
    voices = _interleave_genders(female_variants, male_variants, total, rng)
    pitches = _spread(pitch_range[0], pitch_range[1], total, rng)
    speeds = _spread(speed_range[0], speed_range[1], total, rng)
    # Held-out splits draw first so that they get fresh variants and both genders.
    drawn: dict[str, list[int]] = {}
    start = 0
    for split in ("test", "dev", "train"):
        drawn[split] = list(range(start, start + counts[split]))
        start += counts[split]
    width = max(2, len(str(total)))
    speakers = []
    for split in SPLITS:
        for index in drawn[split]:
            variant, gender = voices[index]
            speaker_id = f"spk{len(speakers) + 1:0{width}d}"
            speakers.append(Speaker(speaker_id, variant, gender, pitches[index], speeds[index], split))
    return speakers


SPEAKER_COLUMNS = ("speaker", "split", "gender", "variant", "pitch", "speed")


def write_speakers_tsv(path: str | Path, speakers: Sequence[Speaker]) -> None:
    """Write ``speaker split gender variant pitch speed`` rows (tab-separated, with a header)."""
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(SPEAKER_COLUMNS)
        for spk in speakers:
            writer.writerow((spk.speaker_id, spk.split, spk.gender, spk.variant, spk.pitch, spk.speed))


def read_speakers_tsv(path: str | Path) -> list[Speaker]:
    """Read a file written by :func:`write_speakers_tsv`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; build the corpus first (stage 1).")
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    try:
        return [
            Speaker(row["speaker"], row["variant"], row["gender"], int(row["pitch"]), int(row["speed"]), row["split"])
            for row in rows
        ]
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"{path} is malformed ({error}); expected columns {SPEAKER_COLUMNS}.") from error
