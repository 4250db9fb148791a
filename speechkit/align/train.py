"""Training the phone aligner on a corpus and aligning every utterance of a set.

Acoustic features come from the dumped codes, so no audio is decoded: with a codec that offers
``dequantize(codes) -> FloatTensor[T, F]`` (``mel_rvq``: normalised log-mel) those are used;
any other codec gets a fixed random embedding of all code levels (:class:`CodeEmbeddingFeatures`),
which is enough for MAS to separate sounds.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from speechkit.align.model import PhoneAligner
from speechkit.data.collate import pad_sequences
from speechkit.data.datadir import read_table
from speechkit.errors import DataError
from speechkit.text.phone_table import PhoneTable

log = logging.getLogger("speechkit.align")

#: codes LongTensor[L, T] -> features FloatTensor[T, F]
FeatureFunction = Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass
class AlignmentItem:
    """One utterance to align: phone ids/language ids LongTensor[P] and its codes LongTensor[L, T]."""

    utt: str
    phones: torch.Tensor
    phone_langs: torch.Tensor
    codes: torch.Tensor


class CodeEmbeddingFeatures:
    """Features for a codec without a continuous view: ``sum_l E_l[codes[l]] / sqrt(L)`` with fixed
    random Gaussian tables ``E_l`` (seeded, never trained, so the aligner cannot collapse them).

    Args:
        num_quantizers, codebook_size: the codec's ``L`` and ``K``; dim: feature size; seed.
    """

    def __init__(self, num_quantizers: int, codebook_size: int, dim: int = 64, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.tables = torch.randn(num_quantizers, codebook_size, dim, generator=generator)
        self.dim = dim

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: LongTensor[L', T] -> FloatTensor[T, dim]."""
        levels = codes.shape[0]
        picked = self.tables[torch.arange(levels).unsqueeze(1), codes]  # [L', T, dim]
        return picked.sum(0) / math.sqrt(levels)


class CepstralFeatures:
    """Log-mel frames -> the first ``num_ceps`` DCT-II coefficients over the mel axis (MFCC-like:
    the spectral envelope without pitch harmonics), normalised per utterance (mean 0, variance 1
    per coefficient, which removes most speaker and channel differences).

    Args:
        log_mel: codes LongTensor[L, T] -> log-mel FloatTensor[T, M]; num_mels: ``M``; num_ceps.
    """

    def __init__(self, log_mel: FeatureFunction, num_mels: int, num_ceps: int = 20) -> None:
        bins = torch.arange(num_mels, dtype=torch.float32)
        orders = torch.arange(num_ceps, dtype=torch.float32)
        self.basis = torch.cos(math.pi / num_mels * (bins.unsqueeze(1) + 0.5) * orders.unsqueeze(0))  # [M, C]
        self.log_mel = log_mel

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: LongTensor[L, T] -> FloatTensor[T, num_ceps]."""
        cepstra = self.log_mel(codes) @ self.basis  # [T, C]
        return (cepstra - cepstra.mean(0)) / cepstra.std(0, unbiased=False).clamp(min=1e-3)


def feature_function(
    codec: Any | None, *, num_quantizers: int, codebook_size: int, seed: int = 0, num_ceps: int = 20
) -> tuple[FeatureFunction, str]:
    """The features MAS aligns on, and their name: with a codec that has ``dequantize`` (log-mel),
    its cepstra (:class:`CepstralFeatures`, ``"cepstra"``; ``num_ceps`` 0 = the log-mel itself,
    ``"dequantize"``), else :class:`CodeEmbeddingFeatures` (``"code_embedding"``)."""
    if codec is not None and callable(getattr(codec, "dequantize", None)):
        log_mel: FeatureFunction = lambda codes: codec.dequantize(codes).float()  # noqa: E731
        if num_ceps <= 0:
            return log_mel, "dequantize"
        num_mels = int(log_mel(torch.zeros(num_quantizers, 1, dtype=torch.long)).shape[1])
        return CepstralFeatures(log_mel, num_mels, min(num_ceps, num_mels)), "cepstra"
    return CodeEmbeddingFeatures(num_quantizers, codebook_size, seed=seed), "code_embedding"


def load_items(data_dir: Path, codes_scp: Path, table: PhoneTable, *, max_utts: int = 0, seed: int = 0) -> list[AlignmentItem]:
    """Utterances of one set that have both phones (``data_dir/phones``) and codes (``codes_scp``).

    ``max_utts`` > 0 keeps a fixed random subset. Utterances with fewer frames than phones cannot
    be aligned (each phone needs a frame) and are left out with a warning.
    """
    from speechkit.data.tokens import load_codes

    phones = read_table(data_dir / "phones")
    codes = load_codes(codes_scp)
    utts = [utt for utt in phones if utt in codes]
    missing = len(phones) - len(utts)
    if missing:
        log.warning("%s: %d utterance(s) have phones but no codes; they get no durations", data_dir, missing)
    if max_utts and len(utts) > max_utts:
        utts = sorted(random.Random(seed).sample(utts, max_utts))
    items, too_short = [], []
    for utt in utts:
        tokens = phones[utt].split()
        item_codes = codes[utt]
        if item_codes.shape[1] < len(tokens):
            too_short.append(utt)
            continue
        items.append(
            AlignmentItem(
                utt=utt,
                phones=torch.tensor(table.encode(tokens), dtype=torch.long),
                phone_langs=torch.tensor(table.language_ids(tokens), dtype=torch.long),
                codes=item_codes,
            )
        )
    if too_short:
        log.warning("%s: %d utterance(s) have fewer frames than phones and get no durations: %s",
                    data_dir, len(too_short), too_short[:5])
    if not items:
        raise DataError(f"{data_dir}: no utterance has both phones and codes ({codes_scp}); run stages 2 and 3.")
    return items


def collate(items: Sequence[AlignmentItem], features: FeatureFunction) -> dict[str, torch.Tensor]:
    """A padded batch: ``phones``, ``phone_langs`` [B, P], ``phone_lens`` [B], ``features`` [B, T, F],
    ``frame_lens`` [B]."""
    phones, phone_lens = pad_sequences([item.phones for item in items])
    phone_langs, _ = pad_sequences([item.phone_langs for item in items])
    frames = [features(item.codes) for item in items]  # each [T, F]
    stacked, frame_lens = pad_sequences([frame.transpose(0, 1).contiguous() for frame in frames])  # [B, F, T]
    return {"phones": phones, "phone_langs": phone_langs, "phone_lens": phone_lens,
            "features": stacked.transpose(1, 2), "frame_lens": frame_lens}


def length_batches(items: Sequence[AlignmentItem], batch_size: int, rng: random.Random | None) -> list[list[AlignmentItem]]:
    """Batches of similar length (sorted by frames, chunked; order shuffled when ``rng`` is given)."""
    ordered = sorted(items, key=lambda item: item.codes.shape[1])
    batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


@dataclasses.dataclass
class TrainingReport:
    """What :func:`train_aligner` did: steps, seconds, and the loss at the start and the end."""

    steps: int
    seconds: float
    first_loss: float
    last_loss: float


def train_aligner(
    model: PhoneAligner,
    items: Sequence[AlignmentItem],
    features: FeatureFunction,
    *,
    steps: int,
    max_minutes: float = 0.0,
    lr: float = 2e-3,
    batch_size: int = 32,
    uniform_steps: int = 0,
    seed: int = 0,
    log_every: int = 50,
) -> TrainingReport:
    """AdamW on the MAS negative log-likelihood for ``steps`` steps or ``max_minutes`` (0 = no cap).

    The first ``uniform_steps`` steps train against the evenly spread path, so the phone means
    start near their sounds before MAS chooses the path. Gradients are clipped at 1.
    """
    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 20))
    model.train()
    start = time.monotonic()
    batches: Iterator[list[AlignmentItem]] = iter(())
    losses: list[float] = []
    step = 0
    while step < steps:
        if max_minutes and time.monotonic() - start > 60.0 * max_minutes:
            log.info("align: time budget of %.1f min reached after %d steps", max_minutes, step)
            break
        chunk = next(batches, None)
        if chunk is None:
            batches = iter(length_batches(items, batch_size, rng))
            continue
        out = model.loss(collate(chunk, features), uniform_path=step < uniform_steps)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(out["loss"].detach()))
        step += 1
        if log_every and step % log_every == 0:
            recent = losses[-log_every:]
            log.info("align: step %d loss %.4f (%.0f s)", step, sum(recent) / len(recent), time.monotonic() - start)
    model.eval()
    if not losses:
        return TrainingReport(steps=0, seconds=time.monotonic() - start, first_loss=math.nan, last_loss=math.nan)
    window = max(1, min(20, len(losses) // 4))
    return TrainingReport(
        steps=step,
        seconds=round(time.monotonic() - start, 2),
        first_loss=sum(losses[:window]) / window,
        last_loss=sum(losses[-window:]) / window,
    )


def align_items(
    model: PhoneAligner, items: Sequence[AlignmentItem], features: FeatureFunction, *, batch_size: int = 32
) -> dict[str, list[int]]:
    """MAS durations of every item: ``{utt: [d1, ..., dP]}`` (each >= 1, summing to the frame count)."""
    model.eval()
    result: dict[str, list[int]] = {}
    for chunk in length_batches(items, batch_size, rng=None):
        durations, _ = model.align(collate(chunk, features))
        for item, counts in zip(chunk, durations):
            result[item.utt] = counts.tolist()
    return result


@torch.no_grad()
def align_text(
    model: PhoneAligner, features: FeatureFunction, phones: torch.Tensor, phone_langs: torch.Tensor, codes: torch.Tensor
) -> list[int]:
    """Best durations of any text against any utterance's codes (e.g. a wrong text, for the
    text-use gap of a phone-synchronous AR): phones/phone_langs LongTensor[P], codes
    LongTensor[L, T] (``T >= P``) -> ``[d1, ..., dP]``."""
    durations, _ = model.align(collate([AlignmentItem("text", phones, phone_langs, codes)], features))
    return durations[0].tolist()


def save_aligner(model: PhoneAligner, directory: Path, extra: dict[str, Any]) -> None:
    """Write ``aligner.pt`` (state dict, loads with weights_only) and ``aligner.json`` (config + sizes)."""
    import json

    from speechkit.utils.fs import atomic_open, atomic_write_text

    directory.mkdir(parents=True, exist_ok=True)
    with atomic_open(directory / "aligner.pt", "wb") as handle:
        torch.save(model.state_dict(), handle)
    info = {"config": dataclasses.asdict(model.config), "context": model.context(), **extra}
    atomic_write_text(directory / "aligner.json", json.dumps(info, indent=1) + "\n")


def load_aligner(directory: Path) -> tuple[PhoneAligner, dict[str, Any]]:
    """Rebuild the aligner saved by :func:`save_aligner`; returns it (eval mode) and its info dict."""
    import json

    from speechkit.align.model import AlignerConfig

    info_path = directory / "aligner.json"
    if not info_path.is_file():
        raise DataError(f"{info_path} does not exist: train the aligner first (python -m speechkit.bin.align ...).")
    info = json.loads(info_path.read_text())
    model = PhoneAligner(AlignerConfig(**info["config"]), **info["context"])
    model.load_state_dict(torch.load(directory / "aligner.pt", weights_only=True))
    return model.eval(), info
