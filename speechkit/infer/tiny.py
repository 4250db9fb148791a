"""Tiny random-weight pipeline parts: for tests, docs examples and smoke runs without training.

:func:`build_tiny_parts` writes, in seconds, everything stage 7 reads from a trained recipe: a
``mel_rvq`` codec fitted for a few k-means iterations on synthetic harmonic tones (Griffin-Lim
vocoder, nothing to train), random-weight ``valle_ar`` / ``valle_nar`` / ``transformer_st``
packs, and the phone table of the multilingual frontend. The speech it makes is noise-like, but
every shape, language ID, mask and file on the way is the real one.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch

from speechkit.text.languages import LANGUAGES

SAMPLE_RATE = 16000
FRONTEND_SPEC: dict[str, Any] = {"name": "multilingual",
                                 "languages": {"en": {"name": "g2p_en"}, "zh": {"name": "pypinyin"}}}
CODEC_SPEC: dict[str, Any] = {
    "name": "mel_rvq", "sample_rate": SAMPLE_RATE, "n_fft": 512, "hop_length": 256, "num_mels": 40,
    "num_quantizers": 3, "codebook_size": 16, "kmeans_iterations": 3,
    "vocoder": {"name": "griffin_lim", "iterations": 4},
}
AR_SPEC: dict[str, Any] = {"name": "valle_ar", "d_model": 32, "num_heads": 2, "num_layers": 1, "ffn_dim": 64,
                           "dropout": 0.0, "max_frames": 40, "max_frames_per_phone": 2.0, "max_frames_margin": 4}
NAR_SPEC: dict[str, Any] = {"name": "valle_nar", "d_model": 32, "num_heads": 2, "num_layers": 1, "ffn_dim": 64,
                            "dropout": 0.0}
ST_SPEC: dict[str, Any] = {"name": "transformer_st", "d_model": 32, "num_heads": 2, "ffn_dim": 64,
                           "encoder_layers": 1, "decoder_layers": 1, "conv_channels": 8, "num_mels": 40,
                           "dropout": 0.0, "beam_size": 1, "max_length_ratio": 0.5, "max_length_margin": 4}


@dataclasses.dataclass
class TinyParts:
    """Paths of the parts :func:`speechkit.infer.pipeline_pack.assemble_pipeline_pack` takes."""

    codec_dir: Path
    ar_pack: Path
    nar_pack: Path
    st_pack: Path | None
    tokens: Path
    frontend_spec: dict[str, Any]
    frontend: Any = None  # the built frontend, reusable by assemble_pipeline_pack


def synthetic_voice(seconds: float, f0: float, seed: int = 0) -> torch.Tensor:
    """A vowel-like harmonic tone with a little vibrato and noise: FloatTensor[S] at 16 kHz."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = f0 * (1 + 0.05 * torch.sin(2 * math.pi * 3 * t))
    phase = 2 * math.pi * torch.cumsum(pitch, 0) / SAMPLE_RATE
    wav = sum(torch.sin(k * phase) / k for k in range(1, 8)) * 0.2
    return (wav + 0.01 * torch.randn(len(t), generator=generator)).float()


def build_tiny_parts(directory: str | Path, *, with_st: bool = True, seed: int = 0,
                     nar_spec: dict[str, Any] | None = None) -> TinyParts:
    """Write ``codec/``, ``ar_pack/``, ``nar_pack/`` [, ``st_pack/``] and ``tokens.txt`` under
    ``directory`` (random weights seeded by ``seed``; ``nar_spec`` default :data:`NAR_SPEC`)."""
    from speechkit.codec_io import save_codec
    from speechkit.pack import save_pack
    from speechkit.registry import build
    from speechkit.text.phone_table import PhoneTable

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    frontend = build("frontend", FRONTEND_SPEC)
    table = PhoneTable(frontend.inventory())
    table.save(directory / "tokens.txt")
    codec = build("codec", CODEC_SPEC)
    codec.fit([synthetic_voice(0.8, 100 + 30 * index, seed=index) for index in range(4)])
    save_codec(codec, directory / "codec")
    context = {"num_phones": len(table), "codebook_size": int(codec.codebook_size), "num_languages": len(LANGUAGES)}
    nar_context = {**context, "num_quantizers": int(codec.num_quantizers)}
    torch.manual_seed(seed)
    ar = build("ar_lm", AR_SPEC, **context).eval()
    _never_end(ar)
    nar = build("nar_lm", nar_spec or NAR_SPEC, **nar_context).eval()
    if callable(getattr(nar, "attach_codec", None)):
        nar.attach_codec(codec)
    save_pack(directory / "ar_pack", {"ar_lm": ar}, {"ar_lm": context})
    save_pack(directory / "nar_pack", {"nar_lm": nar}, {"nar_lm": nar_context})
    st_pack = None
    if with_st:
        st_context = {"num_phones": len(table), "num_languages": len(LANGUAGES)}
        st = build("st_frontend", ST_SPEC, **st_context).eval()
        st_pack = save_pack(directory / "st_pack", {"st_frontend": st}, {"st_frontend": st_context})
    return TinyParts(directory / "codec", directory / "ar_pack", directory / "nar_pack", st_pack,
                     directory / "tokens.txt", dict(FRONTEND_SPEC), frontend)


def build_tiny_pipeline_pack(directory: str | Path, *, with_st: bool = True, seed: int = 0,
                             nar_spec: dict[str, Any] | None = None) -> Path:
    """:func:`build_tiny_parts` under ``directory/parts``, assembled into ``directory/pack``."""
    from speechkit.infer.pipeline_pack import assemble_pipeline_pack

    parts = build_tiny_parts(Path(directory) / "parts", with_st=with_st, seed=seed, nar_spec=nar_spec)
    return assemble_pipeline_pack(Path(directory) / "pack", parts.codec_dir, parts.ar_pack, parts.nar_pack,
                                  parts.st_pack, parts.frontend_spec, parts.tokens, frontend=parts.frontend)


def _never_end(ar: Any) -> None:
    """Push the end-of-sentence logit of a random ``valle_ar`` far down, so generation runs to its
    length guard: random weights would otherwise end after an arbitrary few frames, too short
    to decode, and outputs of predictable length make tiny runs testable."""
    head, eos = getattr(ar, "head", None), getattr(ar, "eos_id", None)
    if isinstance(head, torch.nn.Linear) and head.bias is not None and isinstance(eos, int):
        with torch.no_grad():
            step = ar.codebook_size + 1
            head.bias[eos::step] = -30.0  # the EOS class of every frame slot of a step
