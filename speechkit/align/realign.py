"""Durations of an arbitrary text against an utterance's audio, with the aligner of ``exp/align``.

The text-use gap of the phone-synchronous AR (``aligned_ar``) scores each target's audio with a
*wrong* text; that text needs durations too. :class:`TextRealigner` gives it its best ones (MAS
of the wrong text against the target's codes), so the wrong text is judged under its most
favourable alignment. It rebuilds the feature function the aligner was trained on from the
aligner's saved options (``exp/align/config.yaml``) and the codec (``exp/codec``), exactly as
:mod:`speechkit.bin.align` does, and checks the feature size against the saved model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from speechkit.align.model import PhoneAligner
from speechkit.align.train import FeatureFunction, align_text, feature_function, load_aligner
from speechkit.errors import DataError

#: feature options of the align stage when ``exp/align/config.yaml`` lacks them (its defaults)
DEFAULT_NUM_CEPS = 20
DEFAULT_SEED = 0


class TextRealigner:
    """Callable ``(phones, phone_langs, codes) -> durations`` (see :func:`speechkit.align.train.align_text`).

    Args:
        model: a trained :class:`PhoneAligner`.
        features: codes LongTensor[L, T] -> FloatTensor[T, F], the features ``model`` was trained on.
    """

    def __init__(self, model: PhoneAligner, features: FeatureFunction) -> None:
        self.model = model.eval()
        self.features = features

    def __call__(self, phones: torch.Tensor, phone_langs: torch.Tensor, codes: torch.Tensor) -> list[int]:
        """phones, phone_langs: LongTensor[P]; codes: LongTensor[L, T] with ``T >= P`` -> ``[d1, ..., dP]``
        (each >= 1, summing to ``T``)."""
        if phones.numel() < 1 or phones.numel() > codes.shape[-1]:
            raise DataError(f"cannot align {phones.numel()} phones to {codes.shape[-1]} frames: MAS needs 1 <= P <= T.")
        return align_text(self.model, self.features, phones, phone_langs, codes)

    @classmethod
    def load(cls, align_dir: str | Path, *, dump: str | Path, codec_dir: str | Path | None = None) -> "TextRealigner":
        """The aligner saved in ``align_dir`` (``exp/align``) with its training features.

        Args:
            align_dir: output of ``python -m speechkit.bin.align`` (``aligner.pt``, ``aligner.json``,
                ``config.yaml``).
            dump: the dump root (``dump/codec_info.json``: number of quantizers, codebook size).
            codec_dir: ``exp/codec`` (used when it exists, for codecs with ``dequantize``).

        Raises:
            DataError: no aligner, no codec info, or features that do not match the saved aligner.
        """
        align_dir, dump = Path(align_dir), Path(dump)
        model, info = load_aligner(align_dir)
        info_path = dump / "codec_info.json"
        if not info_path.is_file():
            raise DataError(f"{info_path} does not exist; run stage 3 (speechkit.bin.dump_codes) first.")
        codec_info = json.loads(info_path.read_text(encoding="utf-8"))
        options = _align_options(align_dir)
        codec = _load_codec(codec_dir)
        num_quantizers = int(codec_info["num_quantizers"])
        features, name = feature_function(
            codec, num_quantizers=num_quantizers, codebook_size=int(codec_info["codebook_size"]),
            seed=int(options.get("seed", DEFAULT_SEED)), num_ceps=int(options.get("num_ceps", DEFAULT_NUM_CEPS)),
        )
        trained_on = info.get("training", {}).get("features")
        dim = int(features(torch.zeros(num_quantizers, 1, dtype=torch.long)).shape[1])
        if (trained_on is not None and trained_on != name) or dim != model.feature_dim:
            raise DataError(
                f"the aligner in {align_dir} was trained on {trained_on or '?'} features of size {model.feature_dim}, "
                f"but the codec now gives {name} features of size {dim}; re-run python -m speechkit.bin.align "
                f"(delete {align_dir} first)."
            )
        return cls(model, features)


def _align_options(align_dir: Path) -> dict[str, Any]:
    """The ``align:`` section saved by the align stage (empty when there is none)."""
    from omegaconf import OmegaConf

    path = align_dir / "config.yaml"
    if not path.is_file():
        return {}
    section = OmegaConf.to_container(OmegaConf.load(path), resolve=True).get("align", {})  # type: ignore[union-attr]
    return dict(section) if isinstance(section, dict) else {}


def _load_codec(codec_dir: str | Path | None) -> Any | None:
    """The codec of ``codec_dir`` when the directory exists (else None: code-embedding features)."""
    if codec_dir is None or not Path(codec_dir).is_dir():
        return None
    from speechkit.codec_io import load_codec

    return load_codec(Path(codec_dir))
