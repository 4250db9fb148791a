"""Build the embedded bilingual multi-speaker corpus (recipe stage 1) with espeak-ng.

Every speaker (see :mod:`speechkit.data.speakers`) reads a set of real Chinese-English sentence
pairs (see :mod:`speechkit.data.sentence_pairs`) in both languages. Speakers and sentences are
split into train/dev/test so held-out speakers and sentences never occur in training. Output::

    <out>/{train,dev,test}/    wav.scp text utt2spk spk2utt utt2lang utt2dur utt2pair translation
    <out>/local/wav/<spk>/<spk>-<pair>-<lang>.wav     16 kHz mono 16-bit
    <out>/local/speakers.tsv   speaker -> split, gender, variant, pitch, speed
    <out>/local/pairs.tsv      pair -> split, source id, zh, en
    <out>/local/corpus_stats.json, failed_utterances.tsv, .done.corpus

The build is deterministic for a seed, resumable (wavs are written atomically and skipped when
present; a speaker whose settings changed is re-synthesised) and idempotent (a done-marker with
a fingerprint of the config, espeak-ng version and source text turns a re-run into a no-op).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import shutil
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from speechkit.audio.io import audio_info, resample_audio, save_audio
from speechkit.config import require_minimums
from speechkit.data.datadir import OPTIONAL_TABLES, REQUIRED_FILES, DataDir, validate_datadir
from speechkit.data.espeak import EspeakVoice, check_espeak, espeak_version, synthesize, trim_silence
from speechkit.data.sentence_pairs import (
    SentencePair,
    assign_pairs,
    load_sentence_pairs,
    pairs_digest,
    split_pairs,
    write_pairs_tsv,
)
from speechkit.data.speakers import SPLITS, Speaker, design_speakers, write_speakers_tsv
from speechkit.errors import AudioError, ConfigError, DataError
from speechkit.utils.fs import atomic_write_text
from speechkit.utils.stage import StageMarker, fingerprint

log = logging.getLogger(__name__)

LANGUAGES = ("en", "zh")


@dataclasses.dataclass
class CorpusConfig:
    """Options of the embedded corpus (the ``corpus:`` section of a recipe config).

    Speakers per split and pairs per speaker set the size: each speaker reads its pairs in both
    languages, so a speaker with N pairs has 2N utterances.
    """

    num_train_speakers: int = 24
    num_dev_speakers: int = 4
    num_test_speakers: int = 4
    #: sentence pairs each training speaker reads (in both languages)
    train_pairs_per_speaker: int = 150
    #: sentence pairs each dev/test speaker reads (in both languages)
    eval_pairs_per_speaker: int = 40
    #: sentence pairs held out for dev / test (never read by training speakers)
    dev_pairs: int = 160
    test_pairs: int = 160
    female_variants: list[str] = dataclasses.field(default_factory=lambda: [
        "f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie",
        "aunty", "belinda", "linda", "steph", "steph2", "steph3", "anika", "grandma",
    ])
    male_variants: list[str] = dataclasses.field(default_factory=lambda: [
        "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
        "adam", "Alex", "Andy", "benjamin", "boris", "caleb", "david", "edward",
    ])
    #: espeak-ng -p values are spread over this inclusive range
    pitch_range: list[int] = dataclasses.field(default_factory=lambda: [30, 70])
    #: espeak-ng -s values (words per minute) are spread over this inclusive range
    speed_range: list[int] = dataclasses.field(default_factory=lambda: [135, 185])
    english_voice: str = "en-us"
    #: cmn-latn-pinyin reads Chinese characters correctly (plain cmn does not)
    mandarin_voice: str = "cmn-latn-pinyin"
    sample_rate: int = 16000
    #: frames this many dB below the loudest one count as silence at the edges
    trim_db: float = 40.0
    trim_margin_s: float = 0.05
    #: HSK-format sentences JSON; empty: the one in the hsk-sentences-audio package
    sentences: str = ""
    seed: int = 1234
    #: parallel synthesis workers (does not change the result)
    nj: int = 2

    def __post_init__(self) -> None:
        require_minimums(self, "corpus.", {"num_train_speakers": 1, "train_pairs_per_speaker": 1, "sample_rate": 1,
                                           "nj": 1, "num_dev_speakers": 0, "num_test_speakers": 0,
                                           "eval_pairs_per_speaker": 0, "dev_pairs": 0, "test_pairs": 0})
        for name in ("pitch_range", "speed_range"):
            value = list(getattr(self, name))
            if len(value) != 2 or value[0] > value[1]:
                raise ConfigError(f"corpus.{name} must be [low, high] with low <= high, got {value}.")
        if self.pitch_range[0] < 0 or self.pitch_range[1] > 99:
            raise ConfigError(f"corpus.pitch_range must lie in [0, 99], got {list(self.pitch_range)}.")
        if (self.num_dev_speakers or self.num_test_speakers) and self.eval_pairs_per_speaker < 1:
            raise ConfigError("corpus.eval_pairs_per_speaker must be >= 1 when there are dev/test speakers.")

    @property
    def num_speakers(self) -> dict[str, int]:
        """Speakers per split."""
        return {"train": self.num_train_speakers, "dev": self.num_dev_speakers, "test": self.num_test_speakers}

    def language_voice(self, lang: str) -> str:
        """The espeak-ng language voice for ``lang``."""
        return {"en": self.english_voice, "zh": self.mandarin_voice}[lang]


@dataclasses.dataclass(frozen=True)
class UtteranceJob:
    """One utterance to synthesise (picklable, for worker processes)."""

    utt_id: str
    lang: str
    text: str
    voice: EspeakVoice
    wav_path: Path
    sample_rate: int
    trim_db: float
    trim_margin_s: float


@dataclasses.dataclass(frozen=True)
class UtteranceResult:
    """Outcome of one job: ``seconds`` of audio on success, ``error`` otherwise."""

    utt_id: str
    seconds: float | None
    error: str | None = None
    skipped: bool = False


def synthesize_utterance(job: UtteranceJob) -> UtteranceResult:
    """Write ``job.wav_path`` (16-bit mono at ``job.sample_rate``) unless a complete one exists."""
    if job.wav_path.is_file():
        try:
            info = audio_info(job.wav_path)
            if info.sample_rate == job.sample_rate and info.frames > 0:
                return UtteranceResult(job.utt_id, info.seconds, skipped=True)
        except AudioError:
            pass  # unreadable leftover: synthesise it again
    try:
        wav, rate = synthesize(job.text, job.voice)
        wav = trim_silence(wav, rate, threshold_db=job.trim_db, margin_s=job.trim_margin_s)
        wav = resample_audio(wav, rate, job.sample_rate)
        if wav.size == 0:
            raise AudioError(f"espeak-ng produced only silence for {job.text!r}.")
        save_audio(job.wav_path, wav, job.sample_rate)
    except AudioError as error:
        return UtteranceResult(job.utt_id, None, str(error))
    return UtteranceResult(job.utt_id, len(wav) / job.sample_rate)


def utterance_id(speaker_id: str, pair_id: str, lang: str) -> str:
    """``<spk>-<pair>-<lang>``: starts with the speaker id, as Kaldi sorting requires."""
    return f"{speaker_id}-{pair_id}-{lang}"


def _prepare_speaker_dir(directory: Path, settings_key: str) -> None:
    """Make ``directory`` hold only wavs made with ``settings_key``; drop temp files of killed runs."""
    settings_file = directory / ".settings"
    if directory.is_dir():
        old_key = settings_file.read_text().strip() if settings_file.is_file() else None
        if old_key != settings_key:
            log.info("speaker settings changed: re-synthesising %s", directory.name)
            shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    if not settings_file.is_file():
        atomic_write_text(settings_file, settings_key + "\n")


def _remove_stale_speakers(wav_root: Path, speaker_ids: set[str]) -> None:
    """Delete wav directories of speakers an earlier, differently configured build made."""
    if not wav_root.is_dir():
        return
    for directory in wav_root.iterdir():
        if directory.is_dir() and directory.name not in speaker_ids:
            log.info("removing %s: speaker not in the current design", directory)
            shutil.rmtree(directory)


def prepare_jobs(
    config: CorpusConfig,
    speakers: Sequence[Speaker],
    assignment: dict[str, list[SentencePair]],
    wav_root: Path,
    source_digest: str,
) -> list[UtteranceJob]:
    """Jobs for every (speaker, pair, language), preparing each speaker's wav directory."""
    jobs = []
    version = espeak_version()
    for spk in speakers:
        voices = {
            lang: EspeakVoice(config.language_voice(lang), spk.variant, spk.pitch, spk.speed) for lang in LANGUAGES
        }
        key = fingerprint(voices, config.sample_rate, config.trim_db, config.trim_margin_s, version, source_digest)
        directory = wav_root / spk.speaker_id
        _prepare_speaker_dir(directory, key)
        for pair in assignment[spk.speaker_id]:
            for lang in LANGUAGES:
                utt = utterance_id(spk.speaker_id, pair.pair_id, lang)
                jobs.append(UtteranceJob(
                    utt, lang, pair.text(lang), voices[lang], directory / f"{utt}.wav",
                    config.sample_rate, config.trim_db, config.trim_margin_s,
                ))
    return jobs


def run_jobs(jobs: Sequence[UtteranceJob], nj: int) -> Iterator[UtteranceResult]:
    """Run ``jobs`` in ``nj`` processes (in this process when ``nj == 1``), with a progress bar."""
    from tqdm import tqdm

    progress = tqdm(total=len(jobs), desc="synthesising", unit="utt", mininterval=1.0)
    try:
        if nj == 1:
            for job in jobs:
                yield synthesize_utterance(job)
                progress.update()
            return
        with multiprocessing.get_context().Pool(nj) as pool:
            for result in pool.imap_unordered(synthesize_utterance, jobs, chunksize=8):
                yield result
                progress.update()
    finally:
        progress.close()


def _write_datadir(
    directory: Path,
    jobs: Iterable[UtteranceJob],
    results: dict[str, UtteranceResult],
    pairs_by_utt: dict[str, SentencePair],
    sample_rate: int,
) -> None:
    """Write one split's Kaldi tables from the successful jobs, then validate them."""
    for name in (*REQUIRED_FILES, *OPTIONAL_TABLES):
        (directory / name).unlink(missing_ok=True)  # tables of an older build (and stage 2's) are stale
    datadir = DataDir(directory, {}, {}, {}, {}, {"utt2dur": {}, "utt2pair": {}, "translation": {}})
    for job in jobs:
        result = results[job.utt_id]
        if result.seconds is None:
            continue
        pair = pairs_by_utt[job.utt_id]
        datadir.wav_scp[job.utt_id] = str(job.wav_path)
        datadir.text[job.utt_id] = job.text
        datadir.utt2spk[job.utt_id] = job.utt_id.split("-", 1)[0]
        datadir.utt2lang[job.utt_id] = job.lang
        datadir.extra["utt2dur"][job.utt_id] = f"{result.seconds:.3f}"
        datadir.extra["utt2pair"][job.utt_id] = pair.pair_id
        datadir.extra["translation"][job.utt_id] = pair.text("zh" if job.lang == "en" else "en")
    if not datadir.wav_scp:
        raise DataError(f"No utterance of {directory.name} could be synthesised; see failed_utterances.tsv.")
    datadir.save()
    validate_datadir(directory, check_audio=True, sample_rate=sample_rate)


def _split_stats(jobs: Sequence[UtteranceJob], results: dict[str, UtteranceResult]) -> dict[str, dict]:
    """Hours, utterances, speakers and pairs per language (and in all) for one split."""
    stats: dict[str, dict] = {}
    for lang in (*LANGUAGES, "all"):
        done = [j for j in jobs if (lang == "all" or j.lang == lang) and results[j.utt_id].seconds is not None]
        seconds = sum(results[j.utt_id].seconds or 0.0 for j in done)
        stats[lang] = {
            "hours": round(seconds / 3600, 3),
            "utterances": len(done),
            "speakers": len({j.utt_id.split("-", 1)[0] for j in done}),
            "pairs": len({j.utt_id.split("-")[1] for j in done}),
        }
    return stats


def build_corpus(config: CorpusConfig, out_dir: str | Path) -> dict:
    """Build (or finish building) the corpus under ``out_dir``; return its statistics.

    Re-running with the same config after success does nothing and returns the saved statistics.
    """
    start = time.monotonic()
    out_dir = Path(out_dir).resolve()
    local = out_dir / "local"
    pairs = load_sentence_pairs(config.sentences or None)
    digest = pairs_digest(pairs)
    check_espeak([config.english_voice, config.mandarin_voice], [*config.female_variants, *config.male_variants])
    result_fields = {k: v for k, v in dataclasses.asdict(config).items() if k != "nj"}
    marker = StageMarker(local, "corpus", fingerprint(result_fields, espeak_version(), digest))
    if marker.is_done():
        log.info("corpus in %s is already built (%s); nothing to do", out_dir, marker.path)
        return json.loads((local / "corpus_stats.json").read_text())
    marker.clear()

    pools = split_pairs(pairs, dev_pairs=config.dev_pairs, test_pairs=config.test_pairs, seed=config.seed)
    speakers = design_speakers(
        num_speakers=config.num_speakers,
        female_variants=config.female_variants,
        male_variants=config.male_variants,
        pitch_range=(config.pitch_range[0], config.pitch_range[1]),
        speed_range=(config.speed_range[0], config.speed_range[1]),
        seed=config.seed,
    )
    assignment: dict[str, list[SentencePair]] = {}
    for split in SPLITS:
        ids = [spk.speaker_id for spk in speakers if spk.split == split]
        per_speaker = config.train_pairs_per_speaker if split == "train" else config.eval_pairs_per_speaker
        assignment.update(assign_pairs(pools[split], ids, per_speaker))
    _remove_stale_speakers(local / "wav", {spk.speaker_id for spk in speakers})
    jobs = prepare_jobs(config, speakers, assignment, local / "wav", digest)
    log.info("synthesising %d utterances of %d speakers with nj=%d", len(jobs), len(speakers), config.nj)
    results = {result.utt_id: result for result in run_jobs(jobs, config.nj)}

    pairs_by_utt = {
        utterance_id(spk_id, pair.pair_id, lang): pair
        for spk_id, spk_pairs in assignment.items() for pair in spk_pairs for lang in LANGUAGES
    }
    split_of = {spk.speaker_id: spk.split for spk in speakers}
    stats: dict = {"sample_rate": config.sample_rate, "sets": {}}
    for split in SPLITS:
        split_jobs = [j for j in jobs if split_of[j.utt_id.split("-", 1)[0]] == split]
        if not split_jobs:
            continue
        _write_datadir(out_dir / split, split_jobs, results, pairs_by_utt, config.sample_rate)
        stats["sets"][split] = _split_stats(split_jobs, results)
    failed = sorted((r.utt_id, r.error or "") for r in results.values() if r.error)
    atomic_write_text(local / "failed_utterances.tsv", "".join(f"{utt}\t{error}\n" for utt, error in failed))
    if failed:
        log.warning("%d utterances failed and were left out; see %s", len(failed), local / "failed_utterances.tsv")
    write_speakers_tsv(local / "speakers.tsv", speakers)
    write_pairs_tsv(local / "pairs.tsv", pools)
    stats["total"] = _split_stats(jobs, results)
    stats["failed_utterances"] = len(failed)
    stats["synthesised_this_run"] = sum(1 for r in results.values() if r.seconds is not None and not r.skipped)
    stats["build_seconds"] = round(time.monotonic() - start, 1)
    stats["nj"] = config.nj
    atomic_write_text(local / "corpus_stats.json", json.dumps(stats, indent=1) + "\n")
    marker.mark_done(utterances=stats["total"]["all"]["utterances"], hours=stats["total"]["all"]["hours"])
    return stats
