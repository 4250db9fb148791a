"""Stage 3: fit the codec (if trainable) and dump every utterance's acoustic tokens.

Usage::

    python -m speechkit.bin.dump_codes --config conf/default.yaml --data data --dump dump \\
        --exp exp [--nj 2] [--sets train dev test]

Outputs: ``exp/codec/`` (``config.yaml`` + fitted state, see :mod:`speechkit.codec_io`),
``dump/<set>/codes.scp`` (sharded arks, see :mod:`speechkit.data.tokens`),
``dump/<set>/utt2num_frames`` and ``dump/codec_info.json``. The codec is fitted once (done-marker
``exp/codec/.done.codec``); each shard of each set has its own done-marker, so a killed run
resumes shard by shard. Options of this stage live in the optional ``tokens:`` config section
(:class:`TokensStageConfig`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import multiprocessing
import queue as queue_module
import random
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from speechkit.bin.common import load_stage_config, run_main, stage_parser
from speechkit.codec_io import codec_info, load_codec, save_codec
from speechkit.config import as_plain_dict, save_config, validate_options
from speechkit.data import tokens
from speechkit.data.datadir import DataDir, write_table
from speechkit.errors import AudioError, DataError, SpeechkitError
from speechkit.interfaces.codec import Codec
from speechkit.utils.fs import atomic_write_text
from speechkit.utils.stage import StageMarker, fingerprint

log = logging.getLogger("speechkit.dump_codes")


@dataclasses.dataclass
class TokensStageConfig:
    """Options of stage 3 (config section ``tokens:``; every key optional).

    Attributes:
        fit_set: data set the codec is fitted on.
        fit_max_utts: fit on at most this many utterances (a fixed random subset); 0 = all.
        fit_max_seconds: stop feeding audio to ``fit`` after this many seconds; 0 = no cap.
        max_audio_seconds: longer files are bad audio (not encoded).
        skip_bad_audio: log bad files and list them in ``dump/<set>/bad_utts`` instead of failing.
    """

    fit_set: str = "train"
    fit_max_utts: int = 0
    fit_max_seconds: float = 0.0
    max_audio_seconds: float = 60.0
    skip_bad_audio: bool = False


@dataclasses.dataclass
class ShardJob:
    """One shard of one set to encode (everything a worker process needs)."""

    set_dir: Path
    index: int
    wavs: list[tuple[str, str]]  # (utt, wav path), sorted by utt
    key: str
    max_audio_seconds: float
    skip_bad_audio: bool


class BadAudioError(DataError):
    """Some utterances could not be encoded; ``bad`` lists ``(utt, reason)``."""

    def __init__(self, bad: list[tuple[str, str]]) -> None:
        self.bad = bad
        super().__init__(format_bad_audio(bad))


def format_bad_audio(bad: Sequence[tuple[str, str]]) -> str:
    """A message listing bad utterances (utt id and reason) and the two ways forward."""
    lines = "\n".join(f"  {utt}: {reason}" for utt, reason in bad[:50])
    more = f"\n  ... and {len(bad) - 50} more" if len(bad) > 50 else ""
    return (
        f"{len(bad)} utterance(s) have bad audio:\n{lines}{more}\nFix or remove them from the data "
        "dir, or set tokens.skip_bad_audio=true to skip them (listed in dump/<set>/bad_utts)."
    )


def stage_options(config: Any) -> TokensStageConfig:
    """The validated ``tokens:`` section of the recipe config (defaults when absent)."""
    section = as_plain_dict(config.tokens) if "tokens" in config else {}
    return validate_options(TokensStageConfig, section, where="config section 'tokens'")


# -- fitting -----------------------------------------------------------------------------------
def _fit_subset(data: DataDir, options: TokensStageConfig) -> list[tuple[str, str]]:
    utts = data.utts
    if options.fit_max_utts and len(utts) > options.fit_max_utts:
        utts = sorted(random.Random(0).sample(utts, options.fit_max_utts))
    return [(utt, data.wav_scp[utt]) for utt in utts]


def _fit_waveforms(
    wavs: Sequence[tuple[str, str]], sample_rate: int, options: TokensStageConfig
) -> Iterator[torch.Tensor]:
    """Yield wav: FloatTensor[S] per utterance; bad audio is skipped or, at the end, raised."""
    from speechkit.audio.io import load_audio

    bad: list[tuple[str, str]] = []
    total_seconds = 0.0
    for utt, path in wavs:
        if options.fit_max_seconds and total_seconds >= options.fit_max_seconds:
            break
        try:
            wav, _ = load_audio(path, sample_rate, max_seconds=options.max_audio_seconds)
        except AudioError as error:
            bad.append((utt, str(error)))
            continue
        total_seconds += len(wav) / sample_rate
        yield torch.from_numpy(wav)
    if bad and not options.skip_bad_audio:
        raise BadAudioError(bad)
    for utt, reason in bad:
        log.warning("fit: skipping %s: %s", utt, reason)


def prepare_codec(
    codec_spec: Any, data_root: Path, codec_dir: Path, options: TokensStageConfig
) -> tuple[Codec, str]:
    """Build the codec, fit and save it into ``codec_dir`` unless already done; reuse otherwise.

    Returns:
        (codec ready to encode, fingerprint of its state: changes whenever it is refitted)
    """
    from speechkit import registry

    codec: Codec = registry.build("codec", codec_spec)
    spec = codec.spec()
    if not codec.trainable:
        key = fingerprint(spec)
        marker = StageMarker(codec_dir, "codec", key)
        if not marker.is_done():
            save_codec(codec, codec_dir)
            marker.mark_done(trainable=False)
        return codec, key
    data = DataDir.load(data_root / options.fit_set)
    subset = _fit_subset(data, options)
    key = fingerprint(spec, subset, options.fit_max_seconds, options.max_audio_seconds)
    marker = StageMarker(codec_dir, "codec", key)
    if marker.is_done():
        log.info("codec %s already fitted in %s; reusing it", codec.registered_name, codec_dir)
        return load_codec(codec_dir), key
    marker.clear()
    log.info("fitting codec %s on %d utterances of %s", codec.registered_name, len(subset), options.fit_set)
    codec.fit(_fit_waveforms(subset, codec.sample_rate, options), work_dir=codec_dir / "fit")
    save_codec(codec, codec_dir)
    marker.mark_done(fit_utts=len(subset))
    return codec, key


# -- encoding ----------------------------------------------------------------------------------
def encode_shard(job: ShardJob, codec: Codec, on_utterance: Callable[[], None] = lambda: None) -> list[tuple[str, str]]:
    """Encode one shard into its ark/scp unless its marker says it is done.

    Returns:
        the ``(utt, reason)`` bad-audio list of this shard (only non-empty with ``skip_bad_audio``).

    Raises:
        BadAudioError: some files are unusable and ``skip_bad_audio`` is off (nothing written).
    """
    from speechkit.audio.io import load_audio

    paths = tokens.shard_paths(job.set_dir, job.index)
    marker = StageMarker(job.set_dir, f"codes.{job.index}", job.key)
    if marker.is_done():
        for _ in job.wavs:
            on_utterance()
        return _read_bad(paths["bad"])
    marker.clear()
    bad: list[tuple[str, str]] = []

    def entries() -> Iterator[tuple[str, torch.Tensor]]:
        for utt, path in job.wavs:
            try:
                wav, _ = load_audio(path, codec.sample_rate, max_seconds=job.max_audio_seconds)
            except AudioError as error:
                bad.append((utt, str(error)))
                on_utterance()
                continue
            with torch.inference_mode():
                codes = codec.encode(torch.from_numpy(wav))
            _check_codes(utt, codes, codec)
            on_utterance()
            yield utt, codes
        if bad and not job.skip_bad_audio:
            raise BadAudioError(bad)

    num_frames = tokens.write_codes_shard(
        entries(), paths["ark"], paths["scp"], codebook_size=codec.codebook_size
    )
    tokens.write_utt2num_frames(paths["utt2num_frames"], num_frames)
    write_table(paths["bad"], dict(bad))
    marker.mark_done(utts=len(num_frames), bad=len(bad))
    return bad


def _check_codes(utt: str, codes: torch.Tensor, codec: Codec) -> None:
    if codes.dim() != 2 or codes.shape[0] != codec.num_quantizers or codes.dtype != torch.long:
        raise DataError(
            f"codec {codec.registered_name!r} returned {codes.dtype} codes of shape "
            f"{tuple(codes.shape)} for {utt!r}; expected LongTensor[{codec.num_quantizers}, T]."
        )
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codec.codebook_size):
        raise DataError(
            f"codec {codec.registered_name!r} returned ids outside 0..{codec.codebook_size - 1} for {utt!r}."
        )


def _read_bad(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        return []
    return [tuple(line.split(" ", 1)) for line in path.read_text(encoding="utf-8").splitlines() if line]  # type: ignore[misc]


def _shard_worker(job: ShardJob, codec: Codec | None, codec_dir: Path, messages: Any) -> None:
    """Process entry point: encode one shard, report progress ticks and the outcome on ``messages``."""
    torch.set_num_threads(1)
    try:
        codec = codec if codec is not None else load_codec(codec_dir)
        bad = encode_shard(job, codec, lambda: messages.put(("tick", job.index, None)))
        messages.put(("done", job.index, bad))
    except BadAudioError as error:
        messages.put(("bad", job.index, error.bad))
    except BaseException as error:  # reported to the parent, which raises it with the shard named
        kind = "user" if isinstance(error, SpeechkitError) else "bug"
        messages.put((kind, job.index, f"{type(error).__name__}: {error}"))


def run_shards(jobs: Sequence[ShardJob], codec: Codec, codec_dir: Path, desc: str) -> list[tuple[str, str]]:
    """Encode ``jobs`` (one worker process each, or inline for one job) with one progress bar.

    Returns the skipped bad utterances; raises :class:`BadAudioError` listing every bad file of
    every shard, or :class:`DataError` naming a shard that failed otherwise.
    """
    from tqdm import tqdm

    total = sum(len(job.wavs) for job in jobs)
    bad: list[tuple[str, str]] = []
    bad_errors: list[tuple[str, str]] = []
    with tqdm(total=total, desc=desc, unit="utt", file=sys.stderr) as bar:
        if len(jobs) == 1:
            try:
                bad.extend(encode_shard(jobs[0], codec, lambda: bar.update(1)))
            except BadAudioError as error:
                bad_errors.extend(error.bad)
        else:
            bad, bad_errors = _run_in_processes(jobs, codec, codec_dir, bar)
    if bad_errors:
        raise BadAudioError(sorted(bad_errors))
    return sorted(bad)


def _run_in_processes(
    jobs: Sequence[ShardJob], codec: Codec, codec_dir: Path, bar: Any
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    fork = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if fork else "spawn")
    messages = context.Queue()
    # With fork the workers inherit the loaded codec; with spawn each reloads it from codec_dir.
    processes = {
        job.index: context.Process(
            target=_shard_worker, args=(job, codec if fork else None, codec_dir, messages), daemon=True
        )
        for job in jobs
    }
    for process in processes.values():
        process.start()
    pending = set(processes)
    skipped: list[tuple[str, str]] = []
    bad: list[tuple[str, str]] = []
    failures: list[str] = []
    try:
        while pending:
            try:
                kind, index, payload = messages.get(timeout=1.0)
            except queue_module.Empty:
                dead = [i for i in pending if not processes[i].is_alive()]
                for index in dead:  # died without reporting (killed, out of memory)
                    processes[index].join(timeout=1.0)
                    failures.append(f"shard {index}: worker exited with code {processes[index].exitcode}")
                    pending.discard(index)
                continue
            if kind == "tick":
                bar.update(1)
                continue
            pending.discard(index)
            if kind == "done":
                skipped.extend(payload)
            elif kind == "bad":
                bad.extend(payload)
            else:
                failures.append(f"shard {index}: {payload}")
    finally:
        for process in processes.values():
            process.join(timeout=5.0)
            if process.is_alive():
                process.terminate()
    if failures:
        raise DataError("Encoding failed (finished shards are kept; re-run to resume):\n  " + "\n  ".join(failures))
    return skipped, bad


def dump_set(
    set_name: str,
    data_root: Path,
    dump_root: Path,
    codec: Codec,
    codec_key: str,
    codec_dir: Path,
    nj: int,
    options: TokensStageConfig,
) -> None:
    """Encode one data set into ``dump/<set>/`` (sharded, resumable) unless already done."""
    data = DataDir.load(data_root / set_name)
    set_dir = dump_root / set_name
    set_dir.mkdir(parents=True, exist_ok=True)
    wavs = [(utt, data.wav_scp[utt]) for utt in data.utts]
    chunks = tokens.split_into_shards([utt for utt, _ in wavs], nj)
    job_options = (options.max_audio_seconds, options.skip_bad_audio)
    set_marker = StageMarker(set_dir, "codes", fingerprint(codec_key, wavs, len(chunks), job_options))
    if set_marker.is_done():
        log.info("%s: codes already dumped in %s; nothing to do", set_name, set_dir)
        return
    set_marker.clear()
    _remove_stale_shards(set_dir, len(chunks))
    jobs = []
    start = 0
    for index, chunk in enumerate(chunks):
        shard_wavs = wavs[start:start + len(chunk)]
        start += len(chunk)
        key = fingerprint(codec_key, shard_wavs, job_options)
        jobs.append(ShardJob(set_dir, index, shard_wavs, key, *job_options))
    skipped = run_shards(jobs, codec, codec_dir, desc=f"codes {set_name}")
    shard_files = [tokens.shard_paths(set_dir, job.index) for job in jobs]
    count = tokens.merge_scps([paths["scp"] for paths in shard_files], set_dir / tokens.CODES_SCP)
    num_frames: dict[str, int] = {}
    for paths in shard_files:
        num_frames.update(tokens.read_utt2num_frames(paths["utt2num_frames"]))
    tokens.write_utt2num_frames(set_dir / tokens.UTT2NUM_FRAMES, num_frames)
    write_table(set_dir / "bad_utts", dict(skipped))
    for utt, reason in skipped:
        log.warning("%s: skipped %s: %s", set_name, utt, reason)
    frames = sum(num_frames.values())
    log.info("%s: %d utterances, %d frames (%.2f h of tokens), %d skipped", set_name, count, frames,
             frames / codec.frame_rate / 3600, len(skipped))
    set_marker.mark_done(utts=count, frames=frames, skipped=len(skipped))


def _remove_stale_shards(set_dir: Path, num_shards: int) -> None:
    """Delete shard files and markers left by an earlier run with a larger ``--nj``."""
    for path in set_dir.glob("codes.*"):
        index = path.name.split(".")[1]
        if index.isdigit() and int(index) >= num_shards:
            path.unlink()
    for path in set_dir.glob(".codes.*.tmp"):  # arks of a killed run, never renamed
        path.unlink()
    for path in set_dir.glob(".done.codes.*"):
        index = path.name.rsplit(".", 1)[1]
        if index.isdigit() and int(index) >= num_shards:
            path.unlink()


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of stage 3."""
    parser = stage_parser("Stage 3: fit the codec if trainable, dump acoustic tokens as ark/scp.")
    parser.add_argument("--data", type=Path, default=Path("data"), help="root of the Kaldi data dirs")
    parser.add_argument("--dump", type=Path, default=Path("dump"), help="root of the token dumps")
    parser.add_argument("--exp", type=Path, default=Path("exp"), help="experiment root (codec in exp/codec)")
    parser.add_argument("--nj", type=int, default=1, help="parallel shards per set")
    parser.add_argument("--sets", nargs="+", default=["train", "dev", "test"], help="data sets to encode")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run stage 3; returns 0 on success."""
    args = build_parser().parse_args(argv)
    config = load_stage_config(args)
    if args.print_config:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(config, resolve=True))
        return 0
    if "codec" not in config:
        raise DataError(f"{args.config} has no 'codec:' section naming the codec (e.g. codec: {{name: mel_rvq}}).")
    if args.nj < 1:
        raise DataError(f"--nj must be >= 1, got {args.nj}.")
    options = stage_options(config)
    codec_dir = args.exp / "codec"
    codec, codec_key = prepare_codec(config.codec, args.data, codec_dir, options)
    command = shlex.join([sys.executable, "-m", "speechkit.bin.dump_codes", *(argv if argv is not None else sys.argv[1:])])
    atomic_write_text(codec_dir / "command.sh", command + "\n")
    save_config({"tokens": dataclasses.asdict(options)}, codec_dir / "tokens.yaml")
    info = codec_info(codec)
    atomic_write_text(args.dump / "codec_info.json", json.dumps(info, indent=1) + "\n")
    log.info("codec %s: %d levels x %d codes at %.2f Hz, %d Hz audio", info["name"], info["num_quantizers"],
             info["codebook_size"], info["frame_rate"], info["sample_rate"])
    for set_name in args.sets:
        dump_set(set_name, args.data, args.dump, codec, codec_key, codec_dir, args.nj, options)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
