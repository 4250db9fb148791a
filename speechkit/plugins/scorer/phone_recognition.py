"""Phone recognition with the recipe's own ST model (CTC), shared by ``ctc_cer`` and ``asr_bleu``.

No offline Mandarin ASR exists in any package (see NOTES-ENV), so Chinese output is judged by
the ST frontend's CTC recogniser: the recognised phones are compared with the phones the text
frontend gives for the reference text. Both sides are language-tagged phone-table tokens
(``zh:ang4``); boundary tokens (``<sp>``, ``<sil>``) can be dropped and tones stripped.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from speechkit.errors import ConfigError, DataError, TextError
from speechkit.interfaces.frontend import Frontend, Phone, PhoneSequence
from speechkit.interfaces.st import STFrontend

_TONE = re.compile(r"\d$")


def phone_tokens(phones: Sequence[Phone], *, keep_boundaries: bool = False, keep_tones: bool = True) -> list[str]:
    """Phones -> their table tokens, optionally without boundaries (language ``"-"``) or tone digits."""
    tokens = []
    for phone in phones:
        if phone.lang == "-" and not keep_boundaries:
            continue
        symbol = phone.symbol if keep_tones or phone.lang != "zh" else _TONE.sub("", phone.symbol)
        tokens.append(Phone(symbol, phone.lang).token)
    return tokens


def build_frontend(frontend: Frontend | Mapping[str, Any] | None, fallback: Mapping[str, Any], who: str) -> Frontend:
    """The text frontend given as context (instance or spec), else the ``fallback`` spec."""
    from speechkit.registry import build

    if isinstance(frontend, Frontend):
        return frontend
    spec = frontend if frontend else fallback
    if not spec:
        raise ConfigError(
            f"{who} needs the text frontend to phonemize reference texts: pass it as context "
            "(stage 8 passes the config's `frontend:` section) or set the scorer's `frontend` option."
        )
    return build("frontend", dict(spec))


class PhoneRecognizer:
    """Recognises phones of audio files with an ST frontend's CTC (model loaded on first use).

    Args:
        pack: model pack directory holding an ``st_frontend`` component (e.g. ``exp/st/pack``).
        st_frontend: an already built :class:`STFrontend` (then ``pack`` is not read).
    """

    def __init__(self, pack: str | Path = "", st_frontend: STFrontend | None = None) -> None:
        self.pack = Path(pack) if pack else None
        self._model = st_frontend
        self._cache: dict[str, PhoneSequence] = {}

    @property
    def model(self) -> STFrontend:
        """The ST frontend (loaded from the pack on first use)."""
        if self._model is None:
            from speechkit.pack import load_pack

            if self.pack is None:
                raise ConfigError("Phone recognition needs an ST model: set `pack` (e.g. exp/st/pack).")
            if not self.pack.is_dir():
                raise DataError(f"ST model pack {self.pack} does not exist; train it first (recipe stage 6).")
            self._model = load_pack(self.pack, kinds=["st_frontend"])["st_frontend"]
        return self._model

    def recognize(self, wav_path: str | Path) -> PhoneSequence:
        """Phones recognised in the audio file ``wav_path`` (cached by path)."""
        key = str(wav_path)
        if key not in self._cache:
            import torch

            from speechkit.audio.io import load_audio

            wav, rate = load_audio(wav_path, None, max_seconds=None, allow_silence=True)
            with torch.inference_mode():
                self._cache[key] = list(self.model.recognize(torch.from_numpy(wav), rate))
        return self._cache[key]


class PhoneScorerMixin:
    """What the phone-comparing scorers (``ctc_cer``, ``asr_bleu``) share: a recogniser of the
    audio's phones and a text frontend for the reference's phones, built on first use.

    A scorer using it has a config with ``pack`` and ``frontend`` options and calls
    :meth:`_setup_phone_scoring` from its constructor.
    """

    config: Any

    def _setup_phone_scoring(
        self,
        who: str,
        frontend: Frontend | Mapping[str, Any] | None,
        st_frontend: STFrontend | None,
        phone_recognizer: PhoneRecognizer | None,
    ) -> None:
        """Keep the context: ``who`` names the scorer in errors, ``frontend`` (instance or spec,
        else the config's ``frontend``), ``st_frontend`` (else the config's ``pack`` is loaded)
        and an optional shared ``phone_recognizer``."""
        self._who = who
        self._frontend_source = frontend
        self._frontend: Frontend | None = None
        self.recognizer = phone_recognizer or PhoneRecognizer(self.config.pack, st_frontend)

    @property
    def frontend(self) -> Frontend:
        """The text frontend for reference phones (built on first use)."""
        if self._frontend is None:
            self._frontend = build_frontend(self._frontend_source, self.config.frontend, self._who)
        return self._frontend


def reference_phones(frontend: Frontend, text: str, lang: str, utt_id: str, who: str) -> PhoneSequence:
    """Phones of the reference ``text``; a text the frontend rejects is a :class:`DataError` naming the item."""
    if not text.strip():
        raise DataError(f"{who}: item {utt_id!r} has no reference text to score against.")
    try:
        return frontend.phonemize(text, lang or None)
    except TextError as error:
        raise DataError(f"{who}: cannot phonemize the reference text of item {utt_id!r}: {error}") from error
