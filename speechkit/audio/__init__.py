"""Audio I/O with checks that turn bad input into clear errors."""
from speechkit.audio.io import AudioInfo, load_audio, save_audio

__all__ = ["AudioInfo", "load_audio", "save_audio"]
