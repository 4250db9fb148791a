"""``multilingual`` frontend: one frontend per language, mixed text split into language runs.

Config (YAML)::

    frontend:
      name: multilingual
      languages:
        en: {name: g2p_en}
        zh: {name: pypinyin}

Each nested spec is built through the registry, so any registered frontend (a plugin too) can
serve a language. Text is split by script with :func:`~speechkit.text.langsplit.split_language_runs`
(no tags needed); ``lang`` names the language of script-ambiguous runs (numbers alone, numbers
with no word next to them), e.g. the utterance's language from ``utt2lang``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from speechkit.errors import ConfigError, TextError
from speechkit.interfaces.frontend import Frontend, PhoneSequence
from speechkit.registry import FRONTEND, build
from speechkit.text.boundaries import collapse_boundaries
from speechkit.text.langsplit import split_language_runs


#: Used when ``languages`` is empty. (Not a dataclass default: omegaconf would merge a user's
#: mapping into it, so an English-only config would still get Mandarin.)
DEFAULT_LANGUAGES: dict[str, dict[str, Any]] = {"en": {"name": "g2p_en"}, "zh": {"name": "pypinyin"}}


@FRONTEND.register("multilingual")
class MultilingualFrontend(Frontend):
    """Routes each language run of a text to that language's frontend."""

    @dataclasses.dataclass
    class Config:
        #: language code -> frontend spec (``{name: ..., <options>}``); empty: :data:`DEFAULT_LANGUAGES`
        languages: dict = dataclasses.field(default_factory=dict)

    def __init__(self, config: "MultilingualFrontend.Config | None" = None, **context: Any) -> None:
        super().__init__(config, **context)
        self.frontends: dict[str, Frontend] = {}
        for lang, spec in (self.config.languages or DEFAULT_LANGUAGES).items():
            frontend = build("frontend", spec, **context)
            if lang not in frontend.languages:
                raise ConfigError(
                    f"frontend 'multilingual': languages.{lang} is {frontend.registered_name!r}, which "
                    f"handles {list(frontend.languages)}, not {lang!r}."
                )
            self.frontends[lang] = frontend

    @property
    def languages(self) -> Sequence[str]:
        return tuple(self.frontends)

    def inventory(self) -> list[str]:
        """The union of the per-language inventories (frontends without ``inventory()`` add none)."""
        tokens: list[str] = []
        for frontend in self.frontends.values():
            tokens.extend(getattr(frontend, "inventory", list)())
        return tokens

    def _frontend(self, lang: str, text: str) -> Frontend:
        try:
            return self.frontends[lang]
        except KeyError:
            raise TextError(
                f"Text {text!r} is in {lang!r}, but this multilingual frontend has only "
                f"{list(self.frontends)}; add languages.{lang} to the frontend config."
            ) from None

    def _check_lang(self, lang: str | None) -> None:
        if lang is not None and lang not in self.frontends:
            raise TextError(f"Unsupported language {lang!r}; configured: {list(self.frontends)}.")

    def normalize(self, text: str, lang: str | None = None) -> str:
        self._check_lang(lang)
        return " ".join(
            self._frontend(run.lang, run.text).normalize(run.text, run.lang)
            for run in split_language_runs(text, default_lang=lang)
        )

    def phonemize(self, text: str, lang: str | None = None) -> PhoneSequence:
        self._check_lang(lang)
        runs = split_language_runs(text, default_lang=lang)
        if not runs:
            raise TextError(f"Nothing pronounceable in {text!r}.")
        phones: PhoneSequence = []
        for run in runs:
            phones.extend(self._frontend(run.lang, run.text).phonemize(run.text, run.lang))
        return collapse_boundaries(phones)
