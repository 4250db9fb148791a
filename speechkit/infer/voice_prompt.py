"""A reusable voice prompt: the acoustic tokens of a speaker's utterance with its phones.

Saved as a plain ``.npz`` (no pickled objects, loaded with ``allow_pickle=False``)::

    codes       int64[L, Tp]   all codec levels of the prompt utterance
    phones      str[P]         phone-table tokens of its transcript (``"en:AH0"``, ``"<sil>"``)
    lang        str            language of the transcript (``"en"``/``"zh"``)
    text        str            the transcript (for people; may be empty for S2ST prompts)
    codec       str            registered name of the codec that made ``codes``
    frame_rate  float          codec frames per second
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from speechkit.errors import DataError, describe_error
from speechkit.utils.fs import atomic_open

#: Keys every saved prompt holds.
FIELDS = ("codes", "phones", "lang", "text", "codec", "frame_rate")


@dataclasses.dataclass
class VoicePrompt:
    """Acoustic prompt of one speaker (see the module docstring for the fields).

    codes: LongTensor[L, Tp]; phones: phone-table tokens of the transcript.
    """

    codes: torch.Tensor
    phones: list[str]
    lang: str
    text: str = ""
    codec: str = ""
    frame_rate: float = 0.0

    def __post_init__(self) -> None:
        self.codes = torch.as_tensor(self.codes, dtype=torch.long)
        if self.codes.dim() != 2 or self.codes.shape[1] < 1:
            raise DataError(f"VoicePrompt codes must be LongTensor[L, Tp] with Tp >= 1, got {tuple(self.codes.shape)}.")
        if not self.phones:
            raise DataError("VoicePrompt needs the phones of the prompt's transcript; got none.")
        self.phones = [str(token) for token in self.phones]

    @property
    def num_frames(self) -> int:
        """Prompt length ``Tp`` in codec frames."""
        return int(self.codes.shape[1])

    @property
    def seconds(self) -> float:
        """Prompt length in seconds (0 when the frame rate is unknown)."""
        return self.num_frames / self.frame_rate if self.frame_rate > 0 else 0.0

    def save(self, path: str | Path) -> Path:
        """Write the prompt as ``.npz`` atomically; returns the path written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb", encoding=None) as handle:
            np.savez(
                handle,
                codes=self.codes.cpu().numpy().astype(np.int64),
                phones=np.array(self.phones, dtype=np.str_),
                lang=np.array(self.lang, dtype=np.str_),
                text=np.array(self.text, dtype=np.str_),
                codec=np.array(self.codec, dtype=np.str_),
                frame_rate=np.array(float(self.frame_rate), dtype=np.float64),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> "VoicePrompt":
        """Read a prompt written by :meth:`save`.

        Raises:
            DataError: missing file, not an ``.npz`` of plain arrays, damaged, fields missing or of
                the wrong kind.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"Voice prompt {path} does not exist; make one with `speechkit xtts ... --save-prompt {path}`.")
        try:
            with np.load(path, allow_pickle=False) as archive:
                missing = [key for key in FIELDS if key not in archive.files]
                if missing:
                    raise DataError(f"Voice prompt {path} lacks {missing}; it was not written by VoicePrompt.save.")
                fields = {key: archive[key] for key in FIELDS}
            codes, phones = fields["codes"], fields["phones"]
            if codes.ndim != 2 or codes.dtype.kind not in "iu" or phones.ndim != 1 or phones.dtype.kind != "U":
                raise DataError(f"Voice prompt {path} holds codes {codes.dtype}{list(codes.shape)} and phones "
                                f"{phones.dtype}{list(phones.shape)}, not integer codes [levels, frames] and phone "
                                "strings; re-create it with --save-prompt.")
            return cls(
                codes=torch.from_numpy(codes.astype(np.int64)),
                phones=[str(token) for token in phones.tolist()],
                lang=str(fields["lang"]),
                text=str(fields["text"]),
                codec=str(fields["codec"]),
                frame_rate=float(fields["frame_rate"]),
            )
        except DataError:
            raise
        except Exception as error:  # a damaged archive fails in many ways (zip, npy header, data)
            raise DataError(f"Cannot read voice prompt {path} ({describe_error(error)}); it is damaged or "
                            "not a voice prompt. Re-create it with --save-prompt.") from error
