"""A thin wrapper around the espeak-ng command: check the install, synthesise text to a waveform.

espeak-ng ships voices per language (``en-us``, ``cmn-latn-pinyin``, ...) and language-independent
voice *variants* (``f3``, ``m2``, ``klatt``, ...) that change formants and pitch; ``-p`` (pitch,
0-99) and ``-s`` (speed, words per minute) vary a voice further. A "speaker" of the embedded
corpus is one (variant, pitch, speed) combination, so every speaker speaks every language.

For Mandarin use ``cmn-latn-pinyin``: it reads Chinese characters correctly, whereas plain
``cmn`` spells Latin letters and digits as English.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import shutil
import subprocess

import numpy as np

from speechkit.errors import AudioError, ConfigError, MissingDependencyError

#: The command this module runs.
ESPEAK = "espeak-ng"

#: How to get espeak-ng, repeated in every install error.
INSTALL_HINT = "Install it with `apt-get install espeak-ng` (or run tools/install.sh)."

#: Seconds one synthesis call may take before it counts as hung.
SYNTH_TIMEOUT_S = 60.0


@dataclasses.dataclass(frozen=True)
class EspeakVoice:
    """One espeak-ng voice setting: a language voice plus variant, pitch and speed.

    Args:
        language_voice: espeak language voice, e.g. ``"en-us"`` or ``"cmn-latn-pinyin"``.
        variant: voice variant file name, e.g. ``"f3"`` (see ``espeak-ng --voices=variant``).
        pitch: base pitch 0-99 (espeak's ``-p``; 50 is the default).
        speed: speaking rate in words per minute (espeak's ``-s``; 175 is the default).
    """

    language_voice: str
    variant: str
    pitch: int = 50
    speed: int = 175

    @property
    def voice_name(self) -> str:
        """The ``-v`` argument, e.g. ``en-us+f3``."""
        return f"{self.language_voice}+{self.variant}" if self.variant else self.language_voice

    def command(self) -> list[str]:
        """The espeak-ng command line; the text comes on stdin, the WAV goes to stdout."""
        return [
            ESPEAK, "-v", self.voice_name, "-p", str(self.pitch), "-s", str(self.speed),
            "-b", "1", "--stdin", "--stdout",
        ]


def espeak_path() -> str:
    """Path of the espeak-ng executable; :class:`MissingDependencyError` if it is not installed."""
    path = shutil.which(ESPEAK)
    if path is None:
        raise MissingDependencyError(f"{ESPEAK} is not installed (needed to build the embedded corpus). {INSTALL_HINT}")
    return path


def _run_listing(option: str) -> str:
    espeak_path()
    result = subprocess.run([ESPEAK, option], capture_output=True, text=True, timeout=SYNTH_TIMEOUT_S)
    if result.returncode != 0:
        raise MissingDependencyError(
            f"`{ESPEAK} {option}` failed (exit {result.returncode}): {result.stderr.strip()}. "
            f"The espeak-ng install looks broken. {INSTALL_HINT}"
        )
    return result.stdout


@functools.lru_cache(maxsize=1)
def espeak_version() -> str:
    """``espeak-ng --version`` without the data path, e.g. ``eSpeak NG text-to-speech: 1.51``."""
    return _run_listing("--version").strip().splitlines()[0].split("Data at:")[0].strip()


def _voice_files(listing: str) -> list[str]:
    """The "File" column of an ``espeak-ng --voices`` listing (fixed-width; names may hold spaces)."""
    lines = listing.splitlines()
    if not lines or "File" not in lines[0]:
        return []
    start = lines[0].index("File")
    end = lines[0].find("Other", start)
    return [line[start:end if end > 0 else None].strip() for line in lines[1:] if line[start:].strip()]


@functools.lru_cache(maxsize=1)
def available_language_voices() -> frozenset[str]:
    """Language voice names espeak-ng knows (lower case), e.g. ``en-us``, ``cmn-latn-pinyin``."""
    listing = _run_listing("--voices")
    names = {line.split()[1].lower() for line in listing.splitlines()[1:] if len(line.split()) > 1}
    names.update(name.rsplit("/", 1)[-1].lower() for name in _voice_files(listing))
    return frozenset(names)


@functools.lru_cache(maxsize=1)
def available_variants() -> frozenset[str]:
    """Variant names usable after ``+`` in a voice name, e.g. ``f3``, ``m2``, ``klatt``."""
    return frozenset(name.rsplit("/", 1)[-1] for name in _voice_files(_run_listing("--voices=variant")))


def check_espeak(language_voices: list[str], variants: list[str]) -> None:
    """Fail early, naming the fix, if espeak-ng, a language voice or a variant is missing.

    Raises:
        MissingDependencyError: espeak-ng or one of ``language_voices`` is not installed.
        ConfigError: a variant name is unknown (espeak-ng would silently ignore it).
    """
    espeak_path()
    known_voices = available_language_voices()
    missing = [voice for voice in language_voices if voice.lower() not in known_voices]
    if missing:
        raise MissingDependencyError(
            f"espeak-ng lacks the voice(s) {', '.join(missing)} (Mandarin needs `cmn-latn-pinyin`, "
            f"English `en-us`). Install the full package: `apt-get install espeak-ng espeak-ng-data` "
            "(or run tools/install.sh)."
        )
    known_variants = available_variants()
    unknown = sorted(set(v for v in variants if v not in known_variants))
    if unknown:
        raise ConfigError(
            f"Unknown espeak-ng voice variant(s) {unknown} in corpus.female_variants/male_variants; "
            f"`espeak-ng --voices=variant` lists the valid ones, e.g. {sorted(known_variants)[:12]}."
        )


def synthesize(text: str, voice: EspeakVoice) -> tuple[np.ndarray, int]:
    """Synthesise ``text`` with ``voice``.

    Returns:
        (wav float32[S] in [-1, 1], sample_rate) at espeak-ng's native rate (22.05 kHz).

    Raises:
        AudioError: espeak-ng failed, timed out, or produced no samples for ``text``.
    """
    import soundfile as sf

    try:
        result = subprocess.run(
            voice.command(), input=text.encode("utf-8"), capture_output=True, timeout=SYNTH_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as error:
        raise AudioError(f"espeak-ng ({voice.voice_name}) timed out on {text!r}.") from error
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace").strip()
        raise AudioError(f"espeak-ng ({voice.voice_name}) failed on {text!r} (exit {result.returncode}): {stderr}")
    try:
        # espeak streams the WAV, so its header sizes are placeholders; libsndfile copes with that.
        wav, rate = sf.read(io.BytesIO(result.stdout), dtype="float32", always_2d=False)
    except Exception as error:
        raise AudioError(f"espeak-ng ({voice.voice_name}) wrote unreadable audio for {text!r}: {error}") from error
    if wav.ndim != 1 or wav.size == 0:
        raise AudioError(f"espeak-ng ({voice.voice_name}) produced no audio for {text!r}.")
    return wav, int(rate)


def trim_silence(
    wav: np.ndarray, sample_rate: int, *, threshold_db: float = 40.0, margin_s: float = 0.05
) -> np.ndarray:
    """Cut leading/trailing frames quieter than ``threshold_db`` below the loudest frame.

    A ``margin_s`` of audio is kept on each side so that onsets and releases are not clipped.

    Args:
        wav: float[S] mono waveform.

    Returns:
        float32[S'] with S' <= S (the input unchanged if it has no frame above the threshold).
    """
    if threshold_db <= 0:
        raise ConfigError(f"trim threshold_db must be positive, got {threshold_db}.")
    frame = max(1, int(0.01 * sample_rate))
    num_frames = len(wav) // frame
    if num_frames == 0:
        return wav.astype(np.float32, copy=False)
    frames = wav[: num_frames * frame].reshape(num_frames, frame)  # [F, frame]
    energy_db = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)  # [F]
    loud = np.flatnonzero(energy_db > energy_db.max() - threshold_db)
    margin = int(margin_s * sample_rate)
    start = max(0, loud[0] * frame - margin)
    end = min(len(wav), (loud[-1] + 1) * frame + margin)
    return wav[start:end].astype(np.float32, copy=False)
