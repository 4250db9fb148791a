"""``encodec``: Meta's EnCodec 24 kHz (the VALL-E X paper's codec) through the ``encodec`` package.

At 6 kbps it gives 8 residual levels of 1024 codes at 75 frames per second. Weights are never
downloaded: they come from ``checkpoint`` (a local ``.th`` state dict) or, when that is empty,
from the torch hub cache where ``encodec`` itself would have stored them
(``<torch.hub.get_dir()>/checkpoints/encodec_24khz-d7cc33bc.th``). Missing weights are a
:class:`~speechkit.errors.MissingDependencyError` saying where to put the file.

Install without torchaudio (see docs/codecs.md): ``tools/install_encodec.sh``. ``encodec``
imports torchaudio at import time but only uses it for file IO and resampling, which speechkit
does itself; when torchaudio is absent (or a CUDA build that cannot load), the import runs with a
placeholder module that raises on use (:func:`import_encodec_model`).
"""
from __future__ import annotations

import dataclasses
import importlib
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import torch

from speechkit.errors import AudioError, ConfigError, DataError, MissingDependencyError
from speechkit.interfaces.codec import Codec
from speechkit.registry import CODEC

INSTALL_HINT = "Install it with tools/install_encodec.sh (pip install --no-deps encodec==0.1.1 einops; no torchaudio)."


@dataclasses.dataclass(frozen=True)
class EncodecVariant:
    """A published EnCodec model: how ``encodec`` builds it and its official weight file name."""

    builder: str
    checkpoint_name: str
    sample_rate: int
    frame_rate: int
    bandwidths: tuple[float, ...]


VARIANTS: dict[str, EncodecVariant] = {
    "encodec_24khz": EncodecVariant(
        "encodec_model_24khz", "encodec_24khz-d7cc33bc.th", 24000, 75, (1.5, 3.0, 6.0, 12.0, 24.0)
    ),
}


class _MissingTorchaudio(types.ModuleType):
    """Stands in for torchaudio while ``encodec`` is imported; any use raises a clear error."""

    def __getattr__(self, name: str) -> Any:
        raise MissingDependencyError(
            f"torchaudio.{name} was requested, but torchaudio is not installed (speechkit's EnCodec "
            "plugin does audio IO and resampling itself; call the model through speechkit)."
        )


def import_encodec_model() -> type:
    """``encodec.model.EncodecModel``, importable without a working torchaudio.

    Raises:
        MissingDependencyError: the ``encodec`` package (or ``einops``) is not installed.
    """
    try:
        return importlib.import_module("encodec.model").EncodecModel
    except ModuleNotFoundError as error:
        if error.name in ("encodec", "einops"):
            raise MissingDependencyError(f"The encodec codec needs the {error.name!r} package. {INSTALL_HINT}") from error
        if error.name != "torchaudio":
            raise
    except OSError:  # a torchaudio build whose native libraries do not match torch
        pass
    for name in [m for m in sys.modules if m == "encodec" or m.startswith("encodec.")]:
        del sys.modules[name]  # drop the half-imported package before retrying
    previous = sys.modules.get("torchaudio")
    sys.modules["torchaudio"] = _MissingTorchaudio("torchaudio")
    try:
        return importlib.import_module("encodec.model").EncodecModel
    finally:  # the placeholder never outlives the import: other code sees the real state
        if previous is None:
            sys.modules.pop("torchaudio", None)
        else:
            sys.modules["torchaudio"] = previous


def default_checkpoint_path(model: str) -> Path:
    """Where ``encodec`` caches the weights of ``model``: the torch hub ``checkpoints`` folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VARIANTS[model].checkpoint_name


@CODEC.register("encodec")
class EncodecCodec(Codec):
    """EnCodec (pretrained, not trainable here): ``encode`` wav -> LongTensor[L, T], L from bandwidth.

    The weights load on first use (``encode``/``decode``/``save``), so the component can be built
    and inspected on a machine without them.
    """

    trainable = False

    @dataclasses.dataclass
    class Config:
        """Options.

        Attributes:
            model: published model name (``encodec_24khz``).
            bandwidth: kbps; 6.0 gives 8 levels at 24 kHz (1.5 -> 2, 3 -> 4, 12 -> 16, 24 -> 32).
            checkpoint: local weight file; empty means the torch hub cache file.
        """

        model: str = "encodec_24khz"
        bandwidth: float = 6.0
        checkpoint: str = ""

    def __init__(self, config: "EncodecCodec.Config | None" = None, **context: Any) -> None:
        super().__init__(config)
        if self.config.model not in VARIANTS:
            raise ConfigError(f"encodec model {self.config.model!r} is not supported; choose one of {sorted(VARIANTS)}.")
        self.variant = VARIANTS[self.config.model]
        if self.config.bandwidth not in self.variant.bandwidths:
            raise ConfigError(
                f"encodec bandwidth {self.config.bandwidth} is not offered by {self.config.model}; "
                f"choose one of {list(self.variant.bandwidths)} (kbps)."
            )
        self._model: torch.nn.Module | None = None

    @property
    def sample_rate(self) -> int:
        return self.variant.sample_rate

    @property
    def frame_rate(self) -> float:
        return float(self.variant.frame_rate)

    @property
    def num_quantizers(self) -> int:
        # Each level carries log2(1024) = 10 bits per frame.
        return int(round(self.config.bandwidth * 1000 / (self.variant.frame_rate * 10)))

    @property
    def codebook_size(self) -> int:
        return 1024

    @property
    def checkpoint_path(self) -> Path:
        """The weight file this codec loads (configured path, else the hub cache file)."""
        if self.config.checkpoint:
            return Path(self.config.checkpoint).expanduser()
        return default_checkpoint_path(self.config.model)

    @property
    def model(self) -> torch.nn.Module:
        """The ``encodec.EncodecModel`` with weights loaded (loaded on first access)."""
        if self._model is None:
            self._model = self._load_model()
        return self._model

    def _load_model(self) -> torch.nn.Module:
        encodec_model = import_encodec_model()
        path = self.checkpoint_path
        if not path.is_file():
            where = "the configured checkpoint" if self.config.checkpoint else "the torch hub cache"
            raise MissingDependencyError(
                f"EnCodec weights not found at {path} ({where}). speechkit never downloads them: fetch "
                f"https://dl.fbaipublicfiles.com/encodec/v0/{self.variant.checkpoint_name} on a machine "
                f"with internet and copy it to {default_checkpoint_path(self.config.model)}, or set "
                "codec.checkpoint=/path/to/the/file.th."
            )
        with warnings.catch_warnings():  # encodec uses the deprecated torch weight_norm API
            warnings.simplefilter("ignore", FutureWarning)
            model = getattr(encodec_model, self.variant.builder)(pretrained=False)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as error:  # unpickling errors, or keys/shapes of another model
            raise DataError(
                f"{path} is not a {self.config.model} state dict loadable with weights_only=True: "
                f"{error}. Use the official {self.variant.checkpoint_name}."
            ) from error
        model.set_target_bandwidth(self.config.bandwidth)
        return model.eval()

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav: FloatTensor[S] at 24 kHz -> codes: LongTensor[L, ceil(S / 320)]."""
        if wav.dim() != 1 or not wav.is_floating_point():
            raise AudioError(f"encodec encodes a mono FloatTensor[S], got {wav.dtype} of shape {tuple(wav.shape)}.")
        with torch.inference_mode():
            frames = self.model.encode(wav.float().view(1, 1, -1))  # [(codes [1, L, T], scale)]
        return frames[0][0][0].long()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: LongTensor[L', T] (1 <= L' <= L) -> wav: FloatTensor[320 * T] at 24 kHz."""
        if codes.dim() != 2 or not 1 <= codes.shape[0] <= self.num_quantizers:
            raise DataError(f"encodec decodes LongTensor[L<={self.num_quantizers}, T], got shape {tuple(codes.shape)}.")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise DataError(f"encodec codes must lie in 0..{self.codebook_size - 1}.")
        with torch.inference_mode():
            wav = self.model.decode([(codes.long().unsqueeze(0), None)])  # [1, 1, S]
        return wav[0, 0].float()

    def save(self, directory: str | Path) -> None:
        """Nothing to write (the config names the weights), but fail early if they are missing."""
        self.model  # noqa: B018 - loads the weights or raises MissingDependencyError
