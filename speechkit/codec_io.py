"""Saving and loading a codec "pack": ``exp/codec/`` = ``config.yaml`` + the codec's own state.

``config.yaml`` holds ``codec: {name: <registered name>, <options>}``, so loading rebuilds the
same component through the registry (or names the missing plugin); a trainable codec's fitted
state is whatever its :meth:`~speechkit.interfaces.codec.Codec.save` wrote next to it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from speechkit.errors import ConfigError, DataError
from speechkit.interfaces.codec import Codec

CONFIG_NAME = "config.yaml"


def codec_info(codec: Codec) -> dict[str, Any]:
    """The facts neighbours need about ``codec``: name, sample_rate, frame_rate, L and K."""
    return {
        "name": codec.registered_name,
        "sample_rate": int(codec.sample_rate),
        "frame_rate": float(codec.frame_rate),
        "num_quantizers": int(codec.num_quantizers),
        "codebook_size": int(codec.codebook_size),
        "trainable": bool(codec.trainable),
    }


def save_codec(codec: Codec, directory: str | Path) -> None:
    """Write ``codec``'s state (``codec.save``) and then its ``config.yaml`` into ``directory``."""
    from speechkit.config import save_config

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    codec.save(directory)
    save_config({"codec": codec.spec(), "codec_info": codec_info(codec)}, directory / CONFIG_NAME)


def load_codec(directory: str | Path) -> Codec:
    """Rebuild the codec saved in ``directory`` (e.g. ``exp/codec``) and restore its state.

    Raises:
        DataError: ``directory`` has no ``config.yaml`` (stage 3 did not finish).
        ConfigError / PluginError: the saved config names an unknown or invalid codec.
    """
    from speechkit import registry
    from speechkit.config import load_config

    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise DataError(
            f"{config_path} does not exist: {directory} holds no saved codec. Run stage 3 "
            "(python -m speechkit.bin.dump_codes ...) first."
        )
    config = load_config(config_path)
    if "codec" not in config:
        raise ConfigError(f"{config_path} lacks the 'codec' section naming the codec.")
    codec = registry.build("codec", config.codec)
    if codec.trainable:
        codec.load(directory)
    return codec
