"""Codec benchmark: speed (encode/decode real-time factors) and resynthesis quality on a data set.

Usage::

    python -m speechkit.bench.codec --codec-dir exp/codec --data data/dev [--max-utts 24] \\
        [--out exp/codec/bench.json]        # also: speechkit bench codec ...

For up to ``--max-utts`` English utterances of the data dir (spread over its speakers) it
encodes and decodes each file with the codec saved in ``--codec-dir`` and reports

* ``encode_rtf`` / ``decode_rtf``: wall seconds per second of audio (lower is faster);
* ``wer_original`` / ``wer_resynth`` / ``wer_ratio``: Whisper (``whisper_wer`` scorer) word error
  rate of the original audio and of the codec resynthesis, pooled over words, and their ratio;
* ``speaker_sim``: Resemblyzer cosine (``resemblyzer_sim``) of each resynthesis to its original.

The resynthesised wavs are kept in ``<out dir>/bench_wavs/`` for listening.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from speechkit.audio.io import load_audio, save_audio
from speechkit.codec_io import codec_info, load_codec
from speechkit.data.datadir import DataDir
from speechkit.errors import DataError
from speechkit.interfaces.scorer import ScoreItem
from speechkit.utils.fs import atomic_write_text

log = logging.getLogger("speechkit.bench.codec")


def select_utterances(data: DataDir, max_utts: int, lang: str = "en") -> list[str]:
    """Up to ``max_utts`` utterances in ``lang``, taken round-robin over speakers (deterministic)."""
    by_speaker: dict[str, list[str]] = {}
    for utt in data.utts:
        if data.utt2lang.get(utt) == lang:
            by_speaker.setdefault(data.utt2spk[utt], []).append(utt)
    chosen: list[str] = []
    queues = [list(utts) for _, utts in sorted(by_speaker.items())]
    while queues and len(chosen) < max_utts:
        for utts in queues:
            if utts and len(chosen) < max_utts:
                chosen.append(utts.pop(0))
        queues = [utts for utts in queues if utts]
    return sorted(chosen)


def resynthesize(codec: Any, data: DataDir, utts: Sequence[str], wav_dir: Path) -> dict[str, Any]:
    """Encode + decode each utterance, timing both; write resyntheses to ``wav_dir/<utt>.wav``.

    Returns:
        ``{"audio_seconds", "encode_seconds", "decode_seconds", "frames"}`` totals.
    """
    from tqdm import tqdm

    totals = {"audio_seconds": 0.0, "encode_seconds": 0.0, "decode_seconds": 0.0, "frames": 0}
    for utt in tqdm(utts, desc="codec resynthesis", unit="utt", file=sys.stderr):
        wav, rate = load_audio(data.wav_scp[utt], codec.sample_rate)
        tensor = torch.from_numpy(wav)
        with torch.inference_mode():
            start = time.perf_counter()
            codes = codec.encode(tensor)
            middle = time.perf_counter()
            audio = codec.decode(codes)
            end = time.perf_counter()
        totals["audio_seconds"] += len(wav) / rate
        totals["encode_seconds"] += middle - start
        totals["decode_seconds"] += end - middle
        totals["frames"] += int(codes.shape[1])
        save_audio(wav_dir / f"{utt}.wav", audio.numpy(), codec.sample_rate)
    return totals


def bench_codec(
    codec_dir: str | Path,
    data_dir: str | Path,
    *,
    max_utts: int = 24,
    out: str | Path | None = None,
    whisper: dict[str, Any] | None = None,
    asr: bool = True,
    speaker: bool = True,
    threads: int = 1,
) -> dict[str, Any]:
    """Run the benchmark and write its JSON to ``out`` (default ``<codec_dir>/bench.json``).

    Args:
        whisper: options of the ``whisper_wer`` scorer (e.g. ``{"model_path": ..., "beam_size": 1}``).
        asr / speaker: compute the WER / speaker-similarity figures (need the ``eval`` extra).
        threads: torch threads during the benchmark (RTFs are reported for this many).

    Returns:
        the figures (also the JSON's content), with ``per_utt`` scores.
    """
    from speechkit import registry

    codec_dir, data_dir = Path(codec_dir), Path(data_dir)
    out = Path(out) if out is not None else codec_dir / "bench.json"
    codec = load_codec(codec_dir)
    data = DataDir.load(data_dir)
    utts = select_utterances(data, max_utts)
    if not utts:
        raise DataError(f"{data_dir} has no English utterances (utt2lang 'en') to benchmark on.")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        wav_dir = out.parent / "bench_wavs"
        totals = resynthesize(codec, data, utts, wav_dir)
        result: dict[str, Any] = {
            "codec": codec_info(codec),
            "data": str(data_dir),
            "utts": len(utts),
            "threads": threads,
            "audio_seconds": round(totals["audio_seconds"], 3),
            "encode_rtf": totals["encode_seconds"] / totals["audio_seconds"],
            "decode_rtf": totals["decode_seconds"] / totals["audio_seconds"],
            "tokens_per_second": totals["frames"] / totals["audio_seconds"],
        }
        per_utt: dict[str, dict[str, Any]] = {utt: {} for utt in utts}
        if asr:
            scorer = registry.build("scorer", {"name": "whisper_wer", **(whisper or {})})
            for tag, paths in (("original", {u: Path(data.wav_scp[u]) for u in utts}),
                               ("resynth", {u: wav_dir / f"{u}.wav" for u in utts})):
                items = [ScoreItem(u, paths[u], "en", data.text[u]) for u in utts]
                scores = scorer.score(items)
                result[f"wer_{tag}"] = scorer.summarize(items, scores)["wer"]
                for item, score in zip(items, scores):
                    per_utt[item.utt_id][f"wer_{tag}"] = score["wer"]
                    per_utt[item.utt_id][f"hyp_{tag}"] = scorer.hypotheses[item.utt_id]
            original = result["wer_original"]
            result["wer_ratio"] = result["wer_resynth"] / original if original > 0 else None
        if speaker:
            scorer = registry.build("scorer", {"name": "resemblyzer_sim"})
            items = [ScoreItem(u, wav_dir / f"{u}.wav", "en", reference_wavs=[Path(data.wav_scp[u])]) for u in utts]
            scores = scorer.score(items)
            result["speaker_sim"] = scorer.summarize(items, scores)["speaker_sim"]
            for item, score in zip(items, scores):
                per_utt[item.utt_id]["speaker_sim"] = score["speaker_sim"]
        result["per_utt"] = per_utt
    finally:
        torch.set_num_threads(previous_threads)
    atomic_write_text(out, json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result


def format_table(result: dict[str, Any]) -> str:
    """The headline figures as an aligned two-column text table."""
    info = result["codec"]
    rows = [
        ("codec", f"{info['name']} ({info['num_quantizers']}x{info['codebook_size']} @ "
                  f"{info['frame_rate']:g} Hz, {info['sample_rate']} Hz audio)"),
        ("utterances", f"{result['utts']} ({result['audio_seconds']:.1f} s of audio)"),
        ("encode RTF", f"{result['encode_rtf']:.4f}  ({result['threads']} thread(s))"),
        ("decode RTF", f"{result['decode_rtf']:.4f}"),
    ]
    if "wer_original" in result:
        ratio = result["wer_ratio"]
        rows += [
            ("WER original", f"{result['wer_original']:.3f}"),
            ("WER resynthesis", f"{result['wer_resynth']:.3f}"),
            ("WER ratio", f"{ratio:.2f}" if ratio is not None else "n/a (original WER is 0)"),
        ]
    if "speaker_sim" in result:
        rows.append(("speaker similarity", f"{result['speaker_sim']:.3f}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the codec benchmark."""
    parser = argparse.ArgumentParser(prog="speechkit bench codec", description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec-dir", type=Path, default=Path("exp/codec"), help="saved codec (stage 3 output)")
    parser.add_argument("--data", type=Path, default=Path("data/dev"), help="data dir to benchmark on")
    parser.add_argument("--max-utts", type=int, default=24, help="English utterances to use")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default <codec-dir>/bench.json)")
    parser.add_argument("--whisper-model", default="", help="faster-whisper model dir (default: tiny.en)")
    parser.add_argument("--beam-size", type=int, default=5, help="Whisper beam size")
    parser.add_argument("--no-asr", action="store_true", help="skip the Whisper WER figures")
    parser.add_argument("--no-speaker", action="store_true", help="skip the speaker-similarity figure")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: run the benchmark, print the table, write the JSON."""
    args = build_parser().parse_args(argv)
    result = bench_codec(
        args.codec_dir, args.data, max_utts=args.max_utts, out=args.out,
        whisper={"model_path": args.whisper_model, "beam_size": args.beam_size},
        asr=not args.no_asr, speaker=not args.no_speaker, threads=args.threads,
    )
    print(format_table(result))
    print(f"(written to {args.out or Path(args.codec_dir) / 'bench.json'})")
    return 0


if __name__ == "__main__":
    from speechkit.bin.common import run_main

    sys.exit(run_main(main))
