"""What the inference benchmarks run: model sizes, random-weight models and random inputs.

Two sizes (``--sizes``):

* ``paper``: VALL-E X as published: ``valle_ar`` and ``valle_nar`` with 12 layers, d 1024, 16
  heads, FFN 4096 (egs/vallex_zh_en/conf/tuning/{ar,nar}_paper.yaml), EnCodec-like codes (8
  levels of 1024 at 75 Hz, 24 kHz audio), ~100 phones; its vocoder is a Vocos-sized stand-in for
  EnCodec's decoder (``convnext_istft``, 512 channels, 8 layers, hop 320 at 24 kHz);
* ``default``: the CPU recipe's models (egs/vallex_zh_en/conf/{ar,nar,codec}.yaml):
  ``aligned_ar`` and ``continuous_nar`` with 4 layers, d 256, 4 heads, FFN 1024, ``mel_rvq`` codes
  (8 levels of 256 at 62.5 Hz, 16 kHz audio) and the ``convnext_istft`` vocoder;
* ``tiny``: the default layout with one-layer d 32 models: a smoke test that runs in seconds.

Weights are random (seeded), so no training is needed: speed does not depend on their values.
The scenario is a 3 s voice prompt and 10 s of output at the codec's frame rate, with 12 phones
per second of speech. Random models would end at a random step, so the AR's end decision is
disabled and its length guard is set to stop each sequence at its own planned length; in a
batch the lengths spread over 90-100 % of the output (sequences stop one by one).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from speechkit.errors import ConfigError
from speechkit.registry import build

PHONES_PER_SECOND = 12.0
NUM_PHONES = 100
NUM_LANGUAGES = 3
#: logit bias that keeps a random model from deciding to stop (finite: comparisons stay valid)
NEVER = -1e4


@dataclasses.dataclass(frozen=True)
class BenchSize:
    """One model size: the AR/NAR specs (registry names and options), the codec layout and the
    vocoder (``convnext_istft`` options and the mel layout it is built with)."""

    name: str
    ar: dict[str, Any]
    nar: dict[str, Any]
    codebook_size: int
    num_quantizers: int
    frame_rate: float
    vocoder: dict[str, Any]
    mel_layout: dict[str, Any]


_PAPER_LM = {"d_model": 1024, "num_heads": 16, "num_layers": 12, "ffn_dim": 4096, "dropout": 0.0}
_DEFAULT_LM = {"d_model": 256, "num_heads": 4, "num_layers": 4, "ffn_dim": 1024, "dropout": 0.0}
_TINY_LM = {"d_model": 32, "num_heads": 2, "num_layers": 1, "ffn_dim": 64, "dropout": 0.0}
SIZES: dict[str, BenchSize] = {
    "paper": BenchSize(
        "paper", {"name": "valle_ar", **_PAPER_LM}, {"name": "valle_nar", **_PAPER_LM},
        codebook_size=1024, num_quantizers=8, frame_rate=75.0,
        vocoder={"name": "convnext_istft", "channels": 512, "layers": 8},
        mel_layout={"sample_rate": 24000, "hop_length": 320, "num_mels": 100, "n_fft": 1280},
    ),
    "default": BenchSize(
        "default", {"name": "aligned_ar", **_DEFAULT_LM}, {"name": "continuous_nar", **_DEFAULT_LM, "feature_dim": 80},
        codebook_size=256, num_quantizers=8, frame_rate=62.5,
        vocoder={"name": "convnext_istft"},
        mel_layout={"sample_rate": 16000, "hop_length": 256, "num_mels": 80, "n_fft": 1024},
    ),
    "tiny": BenchSize(
        "tiny", {"name": "aligned_ar", **_TINY_LM}, {"name": "continuous_nar", **_TINY_LM, "feature_dim": 16},
        codebook_size=16, num_quantizers=3, frame_rate=62.5,
        vocoder={"name": "convnext_istft", "channels": 16, "layers": 1},
        mel_layout={"sample_rate": 16000, "hop_length": 256, "num_mels": 16, "n_fft": 1024},
    ),
}


def get_size(name: str) -> BenchSize:
    """The :class:`BenchSize` called ``name`` (ConfigError naming the known ones)."""
    if name not in SIZES:
        raise ConfigError(f"Unknown benchmark size {name!r}; choose from {', '.join(SIZES)}.")
    return SIZES[name]


@dataclasses.dataclass
class Scenario:
    """Random inputs for B sequences (all LongTensor, right-padded; see the LM interfaces).

    phones/phone_langs [B, P] = prompt transcript + target text (``phone_lens``, the target's
    share ``num_target_phones``); prompt_codes [B, L, Tp] (``prompt_lens``); planned output
    frames ``output_frames`` [B] and level-1 codes [B, T] for the NAR; target_langs [B].
    """

    phones: torch.Tensor
    phone_lens: torch.Tensor
    phone_langs: torch.Tensor
    num_target_phones: torch.Tensor
    prompt_codes: torch.Tensor
    prompt_lens: torch.Tensor
    target_langs: torch.Tensor
    output_frames: torch.Tensor
    level1: torch.Tensor
    frames_per_phone: float

    def ar_args(self) -> tuple[torch.Tensor, ...]:
        """Positional arguments of ``ARLanguageModel.generate_batch``."""
        return (self.phones, self.phone_lens, self.phone_langs, self.prompt_codes[:, 0], self.prompt_lens, self.target_langs)

    def nar_args(self, level1: torch.Tensor | None = None, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Positional arguments of ``NARLanguageModel.generate_batch`` (target phones only)."""
        width = int(self.num_target_phones.max())
        offsets = torch.arange(width, device=self.phones.device)
        index = (self.phone_lens - self.num_target_phones).unsqueeze(1) + offsets
        valid = offsets < self.num_target_phones.unsqueeze(1)
        index = index.clamp(max=self.phones.shape[1] - 1)
        phones = self.phones.gather(1, index).masked_fill(~valid, 0)
        langs = self.phone_langs.gather(1, index).masked_fill(~valid, 0)
        level1 = self.level1 if level1 is None else level1
        lengths = self.output_frames if lengths is None else lengths
        return (phones, self.num_target_phones, langs, self.prompt_codes, self.prompt_lens, level1, lengths)

    def to(self, device: torch.device) -> "Scenario":
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                                            if isinstance(getattr(self, f.name), torch.Tensor)})


def make_scenario(size: BenchSize, batch_size: int, *, prompt_seconds: float = 3.0, output_seconds: float = 10.0,
                  seed: int = 0) -> Scenario:
    """Random inputs: each row has a ``prompt_seconds`` prompt and plans ``output_seconds`` of
    output (rows of a batch plan 90-100 % of it, the first row the most)."""
    generator = torch.Generator().manual_seed(seed)
    prompt_frames = max(1, round(prompt_seconds * size.frame_rate))
    full_frames = max(1, round(output_seconds * size.frame_rate))
    prompt_phones = max(1, round(prompt_seconds * PHONES_PER_SECOND))
    full_phones = max(1, round(output_seconds * PHONES_PER_SECOND))
    shares = torch.linspace(1.0, 0.9, batch_size) if batch_size > 1 else torch.ones(1)
    target_phones = (shares * full_phones).round().long().clamp(min=1)
    frames_per_phone = full_frames / full_phones
    output_frames = torch.tensor([math.ceil(frames_per_phone * int(n)) for n in target_phones])
    phone_lens = target_phones + prompt_phones
    width = int(phone_lens.max())
    phones = torch.randint(1, NUM_PHONES, (batch_size, width), generator=generator)
    phone_langs = torch.randint(0, NUM_LANGUAGES, (batch_size, width), generator=generator)
    prompt_codes = torch.randint(0, size.codebook_size, (batch_size, size.num_quantizers, prompt_frames), generator=generator)
    level1 = torch.randint(0, size.codebook_size, (batch_size, int(output_frames.max())), generator=generator)
    return Scenario(
        phones=phones, phone_lens=phone_lens, phone_langs=phone_langs, num_target_phones=target_phones,
        prompt_codes=prompt_codes, prompt_lens=torch.full((batch_size,), prompt_frames),
        target_langs=torch.randint(0, NUM_LANGUAGES, (batch_size,), generator=generator),
        output_frames=output_frames, level1=level1, frames_per_phone=frames_per_phone,
    )


def build_ar(size: BenchSize, scenario: Scenario, *, seed: int = 0) -> nn.Module:
    """A random-weight AR LM (fp32, eval) that generates exactly each row's planned frames:
    its end decision is disabled and its length guard is ``frames_per_phone`` per target phone."""
    torch.manual_seed(seed)
    spec = {**size.ar, "max_frames_per_phone": scenario.frames_per_phone, "max_frames_margin": 0,
            "max_frames": int(scenario.output_frames.max())}
    model = build("ar_lm", spec, num_phones=NUM_PHONES, codebook_size=size.codebook_size, num_languages=NUM_LANGUAGES)
    with torch.no_grad():
        if hasattr(model, "advance_head"):  # aligned_ar: never advance past the last phone by choice
            model.advance_head[-1].bias.fill_(NEVER)
        else:
            model.head.bias.view(model.config.frames_per_step, -1)[:, model.eos_id].fill_(NEVER)
    return model.eval()


def build_nar(size: BenchSize, *, seed: int = 0) -> nn.Module:
    """A random-weight NAR LM (fp32, eval); a feature-predicting one gets random codewords."""
    torch.manual_seed(seed)
    model = build("nar_lm", size.nar, num_phones=NUM_PHONES, codebook_size=size.codebook_size,
                  num_quantizers=size.num_quantizers, num_languages=NUM_LANGUAGES)
    if hasattr(model, "set_codewords"):
        model.set_codewords(torch.randn(size.num_quantizers, size.codebook_size, model.config.feature_dim) * 0.3)
    return model.eval()


def build_vocoder_net(size: BenchSize, *, seed: int = 0) -> Any:
    """A random-weight vocoder of the size's layout (marked fitted, so it synthesises)."""
    torch.manual_seed(seed)
    vocoder = build("vocoder", size.vocoder, **size.mel_layout)
    vocoder._fitted = True  # random weights: speed only
    return vocoder
