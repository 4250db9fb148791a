"""``speechkit xtts`` (zero-shot / cross-lingual TTS) and ``speechkit s2st`` (speech-to-speech
translation) on a VALL-E X pipeline pack (``exp/vallex_pack`` after stage 7)::

    speechkit xtts --pack exp/vallex_pack --prompt spk.wav --prompt-text "昨天是星期日。" \\
        --text "Yesterday was Sunday." --out out.wav
    speechkit xtts --pack exp/vallex_pack --voice spk.npz --text-file lines.txt --out-dir out/
    speechkit s2st --pack exp/vallex_pack --prompt src.wav --out out.wav [--target-lang en]
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from speechkit.errors import ConfigError, DataError, TextError


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling (default: the AR model's config)")
    group.add_argument("--temperature", type=float, help="0 = greedy")
    group.add_argument("--top-k", type=int, help="keep the k most likely codes (1 = greedy)")
    group.add_argument("--top-p", type=float, help="nucleus sampling mass")
    group.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    group.add_argument("--batch-size", type=int, default=8, help="sentences decoded together (default 8)")
    group.add_argument("--candidates", type=int, default=1,
                       help="outputs per sentence; >1 keeps the one the pack's ST model hears saying the text best (default 1)")
    group.add_argument("--candidate-temperature", type=float, default=0.5,
                       help="sampling temperature of the extra candidates (default 0.5)")
    parser.add_argument("--device", default="cpu", help="torch device of the LMs (default cpu)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32",
                        help="linear layers of the LMs: fp32 (default), bf16, or int8 (CPU); see docs/performance.md")
    parser.add_argument("--kv-cache", choices=["fp32", "bf16", "int8", "int4"], default="fp32",
                        help="KV cache of AR decoding: fp32 (default), bf16 (half the bytes per step), int8 "
                             "(a quarter, one scale per position and head) or int4 (an eighth; coarser, see "
                             "docs/performance.md)")
    parser.add_argument("--compile", action="store_true",
                        help="run the NAR through torch.compile (fp32/bf16; the first sentence compiles it, "
                             "tens of seconds; worth it for many sentences)")
    parser.add_argument("--attention", choices=["auto", "fp32", "bf16"], default="auto",
                        help="arithmetic of the NAR's attention: auto (default: bf16 products with --precision bf16 "
                             "or int8 on CPU, else fp32), fp32, or bf16; see docs/performance.md")


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed,
            "batch_size": args.batch_size}


def add_synthesis_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``xtts`` and ``s2st`` sub-commands to the ``speechkit`` parser."""
    xtts = sub.add_parser("xtts", help="speak text in a prompt speaker's voice (any supported language)",
                          description="Zero-shot and cross-lingual TTS with a VALL-E X pipeline pack.")
    xtts.add_argument("--pack", type=Path, required=True, help="pipeline pack (e.g. exp/vallex_pack)")
    voice = xtts.add_mutually_exclusive_group(required=True)
    voice.add_argument("--prompt", type=Path, help="prompt speaker's utterance (wav/flac)")
    voice.add_argument("--voice", type=Path, help="saved voice prompt (.npz from --save-prompt)")
    xtts.add_argument("--prompt-text", help="transcript of --prompt")
    xtts.add_argument("--prompt-lang", help="language of --prompt-text (default: detected)")
    xtts.add_argument("--save-prompt", type=Path, help="also save the voice prompt as .npz for --voice")
    xtts.add_argument("--text", action="append", default=[], help="text to speak (repeatable)")
    xtts.add_argument("--text-file", type=Path, help="file with one text per non-empty line")
    xtts.add_argument("--lang", help="language of the texts (default: detected per text)")
    xtts.add_argument("--accent", help="language ID given to the model instead of the text's (accent control)")
    out = xtts.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", type=Path, help="output wav (one text)")
    out.add_argument("--out-dir", type=Path, help="output folder: 0000.wav, 0001.wav, ... (one per text)")
    _add_sampling(xtts)
    xtts.set_defaults(func=cmd_xtts)

    s2st = sub.add_parser("s2st", help="translate speech into the other language in the same voice",
                          description="Speech-to-speech translation with a VALL-E X pipeline pack.")
    s2st.add_argument("--pack", type=Path, required=True, help="pipeline pack (e.g. exp/vallex_pack)")
    s2st.add_argument("--prompt", type=Path, required=True, help="source speech (it is also the voice prompt)")
    s2st.add_argument("--out", type=Path, required=True, help="output wav")
    s2st.add_argument("--target-lang", help="target language (default: the other one)")
    s2st.add_argument("--source-text", help="oracle transcript of the source speech (with --target-text)")
    s2st.add_argument("--target-text", help="oracle translation (skips the ST model)")
    _add_sampling(s2st)
    s2st.set_defaults(func=cmd_s2st)


def _texts(args: argparse.Namespace) -> list[str]:
    texts = list(args.text)
    if args.text_file is not None:
        if not args.text_file.is_file():
            raise DataError(f"--text-file {args.text_file} does not exist.")
        texts += [line.strip() for line in args.text_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise TextError("Nothing to say: give --text (repeatable) or --text-file.")
    return texts


def _load_pipeline(args: argparse.Namespace) -> Any:
    from speechkit.infer import SynthesisOptions, VallexPipeline

    options = SynthesisOptions(precision=args.precision, kv_cache=args.kv_cache, compile=args.compile,
                               attention=args.attention,
                               candidates=args.candidates,
                               candidate_temperature=args.candidate_temperature)
    return VallexPipeline.load(args.pack, options, device=args.device)


def cmd_xtts(args: argparse.Namespace) -> int:
    """Run ``speechkit xtts``: prompt (wav + transcript, or a saved .npz) + texts -> wav files."""
    from speechkit.audio.io import load_audio, save_audio
    from speechkit.infer import VoicePrompt

    texts = _texts(args)
    if args.out is not None and len(texts) > 1:
        raise ConfigError(f"{len(texts)} texts given but --out names one file; use --out-dir.")
    if args.prompt is not None and not args.prompt_text:
        raise TextError("--prompt needs --prompt-text (its transcript); or use a saved --voice.")
    pipeline = _load_pipeline(args)
    if args.voice is not None:
        prompt = VoicePrompt.load(args.voice)
    else:
        wav, rate = load_audio(args.prompt)
        prompt = pipeline.make_voice_prompt(wav, rate, args.prompt_text, args.prompt_lang)
    if args.save_prompt is not None:
        print(f"voice prompt: {prompt.save(args.save_prompt)}")
    wavs = pipeline.synthesize(texts, prompt, lang=args.lang, accent=args.accent, **_sampling(args))
    paths = [args.out] if args.out is not None else [args.out_dir / f"{index:04d}.wav" for index in range(len(wavs))]
    for path, wav in zip(paths, wavs):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_audio(path, wav, pipeline.sample_rate)
        print(f"wrote {path} ({len(wav) / pipeline.sample_rate:.2f} s)")
    return 0


def cmd_s2st(args: argparse.Namespace) -> int:
    """Run ``speechkit s2st``: source speech -> translated speech in the same voice."""
    from speechkit.audio.io import load_audio, save_audio

    pipeline = _load_pipeline(args)
    wav, rate = load_audio(args.prompt)
    sampling = _sampling(args)
    sampling.pop("batch_size")
    speech, info = pipeline.s2st(wav, rate, args.target_lang, source_text=args.source_text,
                                 target_text=args.target_text, **sampling)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_audio(args.out, speech, pipeline.sample_rate)
    print(f"{info['source_lang']} -> {info['target_lang']}: source phones {' '.join(info['source_phones'])}")
    print(f"target phones {' '.join(info['target_phones'])}")
    print(f"wrote {args.out} ({len(speech) / pipeline.sample_rate:.2f} s, AR stop: {info['stop_reason']})")
    return 0
