"""The default offline codec: residual k-means VQ over normalised log-mel frames + a vocoder.

encode: wav -> log-mel (:class:`speechkit.audio.mel.LogMel`) -> per-bin normalisation ->
residual VQ (:class:`.residual_kmeans.ResidualKMeansQuantizer`) -> codes LongTensor[L, T].
decode: codes -> summed codewords -> de-normalised log-mel -> vocoder (any registered
``vocoder``, named by the nested ``vocoder`` spec) -> wav.

Everything is fitted on the corpus on the CPU (stage 3): normalisation statistics and
codebooks in seconds to a couple of minutes, the default neural vocoder in minutes.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Iterable

import torch

from speechkit.audio.mel import LogMel, MelSpec, check_mono_waveform
from speechkit.errors import ConfigError
from speechkit.interfaces.codec import Codec
from speechkit.plugins.codec.residual_kmeans import ResidualKMeansQuantizer
from speechkit.registry import CODEC, build
from speechkit.utils.fs import atomic_open, atomic_write_text

log = logging.getLogger(__name__)

WEIGHTS_FILE = "codec.pt"
CONFIG_FILE = "codec.json"
VOCODER_DIR = "vocoder"


def _default_vocoder() -> dict[str, Any]:
    return {"name": "convnext_istft"}


@CODEC.register("mel_rvq")
class MelRVQCodec(Codec):
    """Log-mel residual-VQ codec (trainable: call :meth:`fit` or :meth:`load` before encoding).

    Beyond the :class:`~speechkit.interfaces.codec.Codec` contract it exposes the continuous
    views a non-autoregressive model may want: :meth:`features` and :meth:`dequantize`
    (both normalised log-mel FloatTensor[T, num_mels]) and :meth:`features_to_wav`.
    """

    trainable = True

    @dataclasses.dataclass
    class Config:
        """Options of the mel RVQ codec.

        Attributes:
            sample_rate, n_fft, hop_length, num_mels, f_min, f_max: the log-mel analysis
                (frame rate = sample_rate / hop_length; f_max 0 = Nyquist).
            num_quantizers: residual levels ``L``.
            codebook_size: entries per level ``K`` (levels 2..L).
            first_codebook_size: entries of level 1 (0 = codebook_size); ids of every level
                are below ``max(first_codebook_size, codebook_size)``.
            kmeans_iterations: Lloyd iterations per level.
            max_fit_frames: frames (random subsample) the k-means sees.
            train_vocoder_on_quantized: fit the vocoder on dequantised (L-level) features, so
                it learns to undo quantisation error; False fits it on clean features.
            seed: seeds the subsample and the k-means initialisation.
            vocoder: nested vocoder spec, built with this codec's mel layout as context.
        """

        sample_rate: int = 16000
        n_fft: int = 1024
        hop_length: int = 256
        num_mels: int = 80
        f_min: float = 0.0
        f_max: float = 0.0
        num_quantizers: int = 8
        codebook_size: int = 256
        first_codebook_size: int = 0
        kmeans_iterations: int = 20
        max_fit_frames: int = 120000
        train_vocoder_on_quantized: bool = True
        seed: int = 0
        vocoder: dict = dataclasses.field(default_factory=_default_vocoder)

    def __init__(self, config: "MelRVQCodec.Config | None" = None, **context: Any) -> None:
        super().__init__(config)
        cfg = self.config
        if cfg.num_quantizers < 1 or cfg.codebook_size < 2:
            raise ConfigError(
                f"mel_rvq: num_quantizers must be >= 1 and codebook_size >= 2 "
                f"(got {cfg.num_quantizers}, {cfg.codebook_size})."
            )
        if cfg.first_codebook_size != 0 and cfg.first_codebook_size < 2:
            raise ConfigError(f"mel_rvq: first_codebook_size must be >= 2, or 0 for codebook_size (got {cfg.first_codebook_size}).")
        if cfg.kmeans_iterations < 1 or cfg.max_fit_frames < 1:
            raise ConfigError(f"mel_rvq: kmeans_iterations and max_fit_frames must be >= 1 "
                              f"(got {cfg.kmeans_iterations}, {cfg.max_fit_frames}).")
        self.mel_spec = MelSpec(cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.num_mels, cfg.f_min, cfg.f_max)
        self.log_mel = LogMel(self.mel_spec)
        sizes = [cfg.first_codebook_size or cfg.codebook_size] + [cfg.codebook_size] * (cfg.num_quantizers - 1)
        self.quantizer = ResidualKMeansQuantizer(sizes)
        self.vocoder = build("vocoder", cfg.vocoder, **self.vocoder_context())
        self.mean = torch.zeros(cfg.num_mels)
        self.std = torch.ones(cfg.num_mels)
        self._fitted = False

    def vocoder_context(self) -> dict[str, Any]:
        """The mel layout handed to the vocoder (and to any model that predicts log-mel)."""
        spec = self.mel_spec
        return {
            "sample_rate": spec.sample_rate, "hop_length": spec.hop_length, "num_mels": spec.num_mels,
            "n_fft": spec.n_fft, "f_min": spec.f_min, "f_max": spec.f_max,
        }

    # -- Codec contract ------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.mel_spec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.mel_spec.frame_rate

    @property
    def num_quantizers(self) -> int:
        return self.config.num_quantizers

    @property
    def codebook_size(self) -> int:
        return max(self.quantizer.codebook_sizes)

    @property
    def codebook_sizes(self) -> list[int]:
        """Codes of each level (level 1 may be larger: ``first_codebook_size``)."""
        return list(self.quantizer.codebook_sizes)

    @property
    def is_fitted(self) -> bool:
        """Whether codebooks and statistics are trained (after :meth:`fit` or :meth:`load`)."""
        return self._fitted

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav: FloatTensor[S] -> codes LongTensor[L, T] with ``T = S // hop_length + 1``."""
        return self.quantizer.quantize(self.features(wav))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: LongTensor[L', T] (``1 <= L' <= L``) -> wav FloatTensor[(T - 1) * hop_length]."""
        return self.features_to_wav(self.dequantize(codes))

    # -- continuous views ----------------------------------------------------------------------
    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """wav: FloatTensor[S] -> normalised log-mel FloatTensor[T, num_mels]."""
        self._require_fitted("encode")
        wav = check_mono_waveform(wav, "mel_rvq.encode")
        return (self.log_mel(wav) - self.mean) / self.std

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: LongTensor[L', T] -> normalised log-mel FloatTensor[T, num_mels] (sum of codewords)."""
        self._require_fitted("decode")
        self._check_codes(codes)
        return self.quantizer.dequantize(codes)

    def features_to_wav(self, features: torch.Tensor) -> torch.Tensor:
        """features: normalised log-mel FloatTensor[T, num_mels] -> wav FloatTensor[(T - 1) * hop]."""
        return self.vocoder.synthesize(features * self.std + self.mean)

    # -- training ------------------------------------------------------------------------------
    def fit(self, wavs: Iterable[torch.Tensor], work_dir: str | Path | None = None) -> None:
        """Fit statistics, codebooks and (if trainable) the vocoder on mono waveforms.

        wavs: FloatTensor[S] each, at ``sample_rate``. ``work_dir`` holds the vocoder's
        resumable checkpoints.
        """
        from tqdm import tqdm

        cfg = self.config
        waveforms: list[torch.Tensor] = []
        log_mels: list[torch.Tensor] = []
        for index, wav in enumerate(tqdm(wavs, desc="log-mel", unit="utt", leave=False)):
            wav = check_mono_waveform(wav, f"mel_rvq.fit (waveform {index})")
            waveforms.append(wav)
            log_mels.append(self.log_mel(wav))
        if not log_mels:
            raise ConfigError("mel_rvq.fit got no waveforms; check the training data directory.")
        frames = torch.cat(log_mels)  # [N, D]
        self.mean = frames.mean(0)
        self.std = frames.std(0).clamp_min(1e-3)
        normalised = (frames - self.mean) / self.std
        self.quantizer.fit(normalised, cfg.kmeans_iterations, cfg.seed, cfg.max_fit_frames)
        self._fitted = True
        if self.vocoder.trainable:
            vocoder_dir = Path(work_dir) / VOCODER_DIR if work_dir is not None else None
            if vocoder_dir is not None:
                vocoder_dir.mkdir(parents=True, exist_ok=True)
            self.vocoder.fit(self._vocoder_pairs(log_mels, waveforms), vocoder_dir)

    def _vocoder_pairs(
        self, log_mels: list[torch.Tensor], waveforms: list[torch.Tensor]
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """(log-mel FloatTensor[T, D] as the decoder will see it, wav FloatTensor[S]) pairs."""
        for log_mel, wav in zip(log_mels, waveforms):
            if self.config.train_vocoder_on_quantized:
                normalised = (log_mel - self.mean) / self.std
                log_mel = self.quantizer.dequantize(self.quantizer.quantize(normalised)) * self.std + self.mean
            yield log_mel, wav

    # -- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write ``codec.pt`` (plain tensors), ``codec.json`` (spec) and ``vocoder/`` into ``directory``."""
        self._require_fitted("save")
        directory = Path(directory)
        state = {"mean": self.mean, "std": self.std, **self.quantizer.state_dict()}
        with atomic_open(directory / WEIGHTS_FILE, "wb", encoding=None) as handle:
            torch.save(state, handle)
        if self.vocoder.trainable:
            self.vocoder.save(directory / VOCODER_DIR)
        atomic_write_text(directory / CONFIG_FILE, json.dumps(self.spec(), indent=2) + "\n")

    def load(self, directory: str | Path) -> None:
        """Restore what :meth:`save` wrote (``torch.load(weights_only=True)``)."""
        path = Path(directory) / WEIGHTS_FILE
        if not path.is_file():
            raise ConfigError(
                f"{path} is missing: fit the codec first (stage 3 of the recipe, or codec.fit(wavs) "
                "then codec.save(dir))."
            )
        state = torch.load(path, weights_only=True)
        self.mean, self.std = state["mean"], state["std"]
        self.quantizer.load_state_dict(state)
        if self.vocoder.trainable:
            self.vocoder.load(Path(directory) / VOCODER_DIR)
        self._fitted = True

    # -- checks --------------------------------------------------------------------------------
    def _require_fitted(self, action: str) -> None:
        if not self._fitted:
            raise ConfigError(
                f"mel_rvq cannot {action} before it is fitted: run stage 3 of the recipe (which fits "
                "the codec into exp/codec/), or call codec.fit(wavs) or codec.load(dir) first."
            )

    def _check_codes(self, codes: object) -> None:
        if not isinstance(codes, torch.Tensor) or codes.dim() != 2 or codes.dtype != torch.long:
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise ConfigError(f"mel_rvq.decode: expected codes LongTensor[L, T], got {shape}.")
        if not 1 <= codes.shape[0] <= self.num_quantizers:
            raise ConfigError(
                f"mel_rvq.decode: got {codes.shape[0]} levels; this codec has 1..{self.num_quantizers}."
            )
        for level, ids in enumerate(codes):
            size = self.quantizer.codebook_sizes[level]
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= size):
                raise ConfigError(f"mel_rvq.decode: level {level + 1} has ids outside 0..{size - 1}.")
