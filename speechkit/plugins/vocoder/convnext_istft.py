"""A small Vocos-style neural vocoder, trained on the corpus on the CPU in minutes.

Design (after Siuzdak 2023, "Vocos"): log-mel frames -> 1-D conv embedding -> a stack of
ConvNeXt blocks at the frame rate -> per frame, a log magnitude and a phase for each STFT bin
-> inverse STFT. Everything runs at the frame rate (no upsampling convolutions), which is what
makes it cheap enough to train and run on a CPU. Trained without a discriminator, on
multi-resolution STFT magnitude losses and a log-mel loss (:mod:`.vocoder_losses`); espeak's
formant-synthesised voices are simple enough for this to beat Griffin-Lim clearly
(docs/codecs.md has the comparison).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from speechkit.audio.mel import LogMel
from speechkit.config import require_minimums
from speechkit.errors import ConfigError
from speechkit.plugins.vocoder.griffin_lim import check_features
from speechkit.plugins.vocoder.vocoder_losses import MultiResolutionSTFTLoss
from speechkit.plugins.vocoder.mel_vocoder import MelVocoder
from speechkit.registry import VOCODER
from speechkit.utils.fs import atomic_open, atomic_write_text

log = logging.getLogger(__name__)

WEIGHTS_FILE = "vocoder.pt"
CONFIG_FILE = "vocoder.json"
CHECKPOINT_FILE = "vocoder_checkpoint.pt"


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> pointwise MLP, residual, with a learned layer scale.

    x: FloatTensor[B, C, T] -> FloatTensor[B, C, T].
    """

    def __init__(self, channels: int, kernel_size: int, expansion: int, layer_scale: float) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.expand = nn.Linear(channels, expansion * channels)
        self.project = nn.Linear(expansion * channels, channels)
        self.scale = nn.Parameter(torch.full((channels,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(x).transpose(1, 2)  # [B, T, C]
        y = self.project(nn.functional.gelu(self.expand(self.norm(y))))
        return x + (self.scale * y).transpose(1, 2)


class ConvNeXtISTFTNet(nn.Module):
    """log-mel FloatTensor[B, T, D] -> complex STFT FloatTensor[B, F, T] (``F = n_fft // 2 + 1``)."""

    def __init__(self, num_mels: int, n_fft: int, channels: int, layers: int, kernel_size: int) -> None:
        super().__init__()
        self.embed = nn.Conv1d(num_mels, channels, kernel_size, padding=kernel_size // 2)
        self.norm_in = nn.LayerNorm(channels)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(channels, kernel_size, expansion=3, layer_scale=1.0 / layers) for _ in range(layers)
        )
        self.norm_out = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, n_fft + 2)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.embed(mel.transpose(1, 2))  # [B, C, T]
        x = self.norm_in(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        out = self.head(self.norm_out(x.transpose(1, 2))).transpose(1, 2)  # [B, F * 2, T]
        log_magnitude, phase = out.chunk(2, dim=1)  # [B, F, T] each
        magnitude = log_magnitude.clamp(max=math.log(1e2)).exp()
        return torch.polar(magnitude, phase)


@VOCODER.register("convnext_istft")
class ConvNeXtISTFTVocoder(MelVocoder):
    """Trainable vocoder for natural-log magnitude mel frames (:class:`speechkit.audio.mel.LogMel`).

    Context (from the codec): ``sample_rate``, ``hop_length``, ``num_mels``, optionally
    ``n_fft``, ``f_min``, ``f_max`` of the features. The synthesis STFT uses
    ``istft_hops * hop_length`` points, independent of the analysis ``n_fft``.
    """

    trainable = True

    @dataclasses.dataclass
    class Config:
        """Options of the ConvNeXt + iSTFT vocoder.

        Attributes:
            channels, layers, kernel_size: width, depth and conv kernel of the backbone.
            istft_hops: synthesis FFT size in hops (4 -> n_fft = 4 * hop_length).
            steps: optimizer steps of :meth:`fit`; batch_size segments of segment_frames each.
            learning_rate: AdamW peak rate (cosine decay to 5% after a short warm-up).
            mel_loss_weight: weight of the log-mel L1 term beside the multi-resolution STFT loss.
            max_minutes: stop training after this much wall time (0 = no bound; reproducible).
            max_train_seconds: audio kept in memory for training (longer corpora are subsampled).
            checkpoint_every: steps between resumable checkpoints in ``work_dir``.
            threads: torch intra-op threads while training (0 = leave torch's setting; 1 by
                default: on a shared 2-core machine 2 threads ran up to 70x slower).
            seed: seeds segment sampling and initialisation.
        """

        channels: int = 192
        layers: int = 6
        kernel_size: int = 7
        istft_hops: int = 4
        steps: int = 3500
        batch_size: int = 16
        segment_frames: int = 32
        learning_rate: float = 2e-3
        mel_loss_weight: float = 1.0
        max_minutes: float = 0.0
        max_train_seconds: float = 3600.0
        checkpoint_every: int = 250
        threads: int = 1
        seed: int = 0

    def __init__(self, config: "ConvNeXtISTFTVocoder.Config | None" = None, **context: object) -> None:
        super().__init__(config, **context)  # mel layout from the codec: self.mel_spec
        cfg = self.config
        if cfg.istft_hops < 2:
            raise ConfigError(f"convnext_istft: istft_hops must be >= 2 (got {cfg.istft_hops}).")
        require_minimums(cfg, "convnext_istft: ", {"channels": 1, "layers": 1, "kernel_size": 1, "steps": 1,
                                                   "batch_size": 1, "segment_frames": 2, "checkpoint_every": 1,
                                                   "threads": 0, "mel_loss_weight": 0, "max_minutes": 0})
        for name in ("learning_rate", "max_train_seconds"):
            if not getattr(cfg, name) > 0:
                raise ConfigError(f"convnext_istft: {name} must be > 0 (got {getattr(cfg, name)}).")
        self.synthesis_fft = cfg.istft_hops * self.mel_spec.hop_length
        torch.manual_seed(cfg.seed)
        self.net = ConvNeXtISTFTNet(self.mel_spec.num_mels, self.synthesis_fft, cfg.channels, cfg.layers, cfg.kernel_size)
        self._window = torch.hann_window(self.synthesis_fft)
        self._feature_stats = torch.tensor([0.0, 1.0])  # mean, std of the log-mel input
        self._fitted = False

    @property
    def is_fitted(self) -> bool:
        """Whether the network holds trained weights (after :meth:`fit` or :meth:`load`)."""
        return self._fitted

    # -- synthesis -----------------------------------------------------------------------------
    def _generate(self, mel: torch.Tensor) -> torch.Tensor:
        """mel: FloatTensor[B, T, D] (raw log-mel) -> wav FloatTensor[B, (T - 1) * hop_length]."""
        mean, std = self._feature_stats.tolist()
        stft = self.net((mel - mean) / std)  # [B, F, T]
        num_samples = (mel.shape[1] - 1) * self.mel_spec.hop_length
        return torch.istft(
            stft, self.synthesis_fft, self.mel_spec.hop_length, window=self._window, center=True,
            length=num_samples,
        )

    def synthesize(self, features: torch.Tensor) -> torch.Tensor:
        """features: log-mel FloatTensor[T, D] -> wav FloatTensor[(T - 1) * hop_length]."""
        if not self._fitted:
            raise ConfigError(
                "convnext_istft vocoder is not trained: call fit() (stage 3 of the recipe fits it "
                "with the codec) or load() a trained one."
            )
        features = check_features(features, self.mel_spec.num_mels, "convnext_istft.synthesize")
        self.net.eval()
        with torch.inference_mode():
            return self._generate(features[None])[0].clamp(-1.0, 1.0)

    # -- training ------------------------------------------------------------------------------
    def fit(
        self,
        pairs: Iterable[tuple[torch.Tensor, torch.Tensor]],
        work_dir: str | Path | None = None,
    ) -> None:
        """Train on (log-mel FloatTensor[T, D], wav FloatTensor[S]) pairs of the same utterances.

        With ``work_dir`` a checkpoint is written every ``checkpoint_every`` steps and a killed
        run resumes from it. Progress is shown with tqdm.
        """
        from tqdm import tqdm

        cfg = self.config
        previous_threads = torch.get_num_threads()
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        try:
            mels, wavs = self._collect_pairs(pairs)
            all_frames = torch.cat(mels)
            self._feature_stats = torch.tensor([all_frames.mean().item(), all_frames.std().item() + 1e-5])
            optimizer = torch.optim.AdamW(self.net.parameters(), lr=cfg.learning_rate, betas=(0.8, 0.99))
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
            step = self._resume(work_dir, optimizer, schedule)
            loss_fn = MultiResolutionSTFTLoss(self.mel_spec)
            started = time.monotonic()
            self.net.train()
            bar = tqdm(total=cfg.steps, initial=step, desc="vocoder", unit="step", leave=False)
            while step < cfg.steps:
                # the batch depends on (seed, step) only, so a resumed run sees the same batches
                sampler = random.Random(cfg.seed * 1000003 + step)
                mel_batch, wav_batch = self._sample_batch(mels, wavs, sampler)
                prediction = self._generate(mel_batch)
                spectral, mel_term = loss_fn(prediction, wav_batch)
                loss = spectral + cfg.mel_loss_weight * mel_term
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
                optimizer.step()
                schedule.step()
                step += 1
                bar.update(1)
                bar.set_postfix(stft=f"{spectral.item():.3f}", mel=f"{mel_term.item():.3f}")
                if work_dir is not None and step % cfg.checkpoint_every == 0:
                    self._checkpoint(work_dir, optimizer, schedule, step)
                if cfg.max_minutes > 0 and time.monotonic() - started > 60 * cfg.max_minutes:
                    log.warning("vocoder: stopping at step %d after max_minutes=%s", step, cfg.max_minutes)
                    break
            bar.close()
        finally:
            torch.set_num_threads(previous_threads)
        self.net.eval()
        self._fitted = True

    def _lr_factor(self, step: int) -> float:
        warmup = max(1, min(200, self.config.steps // 10))
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, self.config.steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def _collect_pairs(
        self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        hop, need = self.mel_spec.hop_length, self.config.segment_frames
        mels: list[torch.Tensor] = []
        wavs: list[torch.Tensor] = []
        kept_seconds = 0.0
        for mel, wav in pairs:
            mel = check_features(mel, self.mel_spec.num_mels, "convnext_istft.fit")
            if mel.shape[0] < need + 1 or wav.numel() < (mel.shape[0] - 1) * hop:
                continue  # too short for one training segment
            mels.append(mel)
            wavs.append(wav.float())
            kept_seconds += wav.numel() / self.sample_rate
            if kept_seconds >= self.config.max_train_seconds:
                break
        if not mels:
            raise ConfigError(
                f"convnext_istft.fit: no utterance is longer than segment_frames={need} frames "
                f"({need * hop / self.sample_rate:.2f} s). Give longer audio or lower segment_frames."
            )
        return mels, wavs

    def _sample_batch(
        self, mels: list[torch.Tensor], wavs: list[torch.Tensor], sampler: random.Random
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (mel FloatTensor[B, N + 1, D], wav FloatTensor[B, N * hop]) with N = segment_frames."""
        hop, frames = self.mel_spec.hop_length, self.config.segment_frames
        mel_segments, wav_segments = [], []
        for _ in range(self.config.batch_size):
            index = sampler.randrange(len(mels))
            start = sampler.randrange(mels[index].shape[0] - frames)
            mel_segments.append(mels[index][start : start + frames + 1])
            wav_segments.append(wavs[index][start * hop : (start + frames) * hop])
        return torch.stack(mel_segments), torch.stack(wav_segments)

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, object]:
        return {"net": self.net.state_dict(), "feature_stats": self._feature_stats}

    def _checkpoint(self, work_dir: str | Path, optimizer, schedule, step: int) -> None:
        state = {**self._state(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "step": step}
        with atomic_open(Path(work_dir) / CHECKPOINT_FILE, "wb", encoding=None) as handle:
            torch.save(state, handle)

    def _resume(self, work_dir: str | Path | None, optimizer, schedule) -> int:
        path = Path(work_dir) / CHECKPOINT_FILE if work_dir is not None else None
        if path is None or not path.is_file():
            return 0
        state = torch.load(path, weights_only=True)
        self.net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        log.info("vocoder: resuming from %s at step %d", path, state["step"])
        return int(state["step"])

    def save(self, directory: str | Path) -> None:
        """Write ``vocoder.pt`` (plain tensors) and ``vocoder.json`` (the spec) into ``directory``."""
        import json

        if not self._fitted:
            raise ConfigError("convnext_istft: nothing to save; call fit() first.")
        directory = Path(directory)
        with atomic_open(directory / WEIGHTS_FILE, "wb", encoding=None) as handle:
            torch.save(self._state(), handle)
        atomic_write_text(directory / CONFIG_FILE, json.dumps(self.spec(), indent=2) + "\n")

    def load(self, directory: str | Path) -> None:
        """Restore weights written by :meth:`save` (``torch.load(weights_only=True)``)."""
        path = Path(directory) / WEIGHTS_FILE
        if not path.is_file():
            raise ConfigError(f"{path} is missing: train the vocoder (stage 3 of the recipe) first.")
        state = torch.load(path, weights_only=True)
        self.net.load_state_dict(state["net"])
        self._feature_stats = state["feature_stats"]
        self.net.eval()
        self._fitted = True
