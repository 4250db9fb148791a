"""Reading and writing waveforms with the checks every stage needs.

``load_audio`` returns mono float32 at the requested rate and raises :class:`AudioError` naming
the file and the fix for: missing/corrupt files, empty or all-silent audio, and files longer
than a bound. Stereo is downmixed (with ``mono="mix"``) or refused (``mono="strict"``); a wrong
sample rate is resampled with soxr (or refused when ``resample=False``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from speechkit.errors import AudioError

#: Peak amplitude under which a signal counts as silent (about -70 dBFS).
SILENCE_PEAK = 3e-4


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file (read without decoding samples)."""

    path: Path
    sample_rate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | Path) -> AudioInfo:
    """Read the header of ``path``; :class:`AudioError` if missing or unreadable."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"Audio file {path} does not exist. Check the wav.scp entry or re-run stage 1.")
    try:
        info = sf.info(str(path))
    except Exception as error:  # soundfile raises RuntimeError/LibsndfileError on corrupt data
        raise AudioError(
            f"Cannot read audio {path}: {error}. The file is corrupt or not a supported format "
            "(WAV/FLAC/OGG); re-create or convert it (e.g. `sox in.mp3 out.wav`)."
        ) from error
    return AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames))


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    *,
    mono: str = "mix",
    resample: bool = True,
    max_seconds: float | None = 600.0,
    allow_silence: bool = False,
) -> tuple[np.ndarray, int]:
    """Load ``path`` as mono float32 in [-1, 1].

    Args:
        sample_rate: target rate; ``None`` keeps the file's rate.
        mono: ``"mix"`` averages channels, ``"strict"`` refuses multi-channel files.
        resample: if False, a rate different from ``sample_rate`` is an error.
        max_seconds: refuse longer files (``None``: no bound) before decoding them.
        allow_silence: if False, an all-silent file is an error.

    Returns:
        (wav float32[S], sample_rate)
    """
    import soundfile as sf

    info = audio_info(path)
    if info.frames == 0:
        raise AudioError(f"Audio file {path} is empty (0 samples). Re-create it.")
    if max_seconds is not None and info.seconds > max_seconds:
        raise AudioError(
            f"Audio file {path} is {info.seconds:.1f} s long, over the {max_seconds:.0f} s limit. "
            "Split it into utterances first, or raise max_seconds."
        )
    if info.channels > 1 and mono == "strict":
        raise AudioError(f"Audio file {path} has {info.channels} channels; mono is required (`sox in.wav -c 1 out.wav`).")
    try:
        wav, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:
        raise AudioError(f"Cannot decode audio {path}: {error}. The file is truncated or corrupt.") from error
    wav = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"Audio file {path} contains NaN or infinite samples; it is corrupt.")
    if sample_rate is not None and rate != sample_rate:
        if not resample:
            raise AudioError(f"Audio file {path} is at {rate} Hz, expected {sample_rate} Hz. Resample it first.")
        wav = resample_audio(wav, rate, sample_rate)
        rate = sample_rate
    if not allow_silence and float(np.max(np.abs(wav))) < SILENCE_PEAK:
        raise AudioError(f"Audio file {path} is silent (peak below {SILENCE_PEAK}); nothing to encode.")
    return np.ascontiguousarray(wav, dtype=np.float32), int(rate)


def resample_audio(wav: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """wav float[S] at ``from_rate`` -> float32[S * to_rate / from_rate] (soxr, high quality)."""
    if from_rate == to_rate:
        return wav.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(wav, from_rate, to_rate, quality="HQ").astype(np.float32)


def save_audio(path: str | Path, wav: np.ndarray, sample_rate: int) -> None:
    """Write float mono ``wav`` as 16-bit PCM WAV atomically (clipped to [-1, 1])."""
    import soundfile as sf

    from speechkit.utils.fs import atomic_open

    data = np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)
    with atomic_open(path, "wb", encoding=None) as handle:
        sf.write(handle, data, sample_rate, format="WAV", subtype="PCM_16")
