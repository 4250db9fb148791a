"""Frontends built once per session, with the NLTK data for g2p_en built offline in a temp dir."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from speechkit.interfaces.frontend import Frontend
from speechkit.registry import build


@pytest.fixture(scope="session")
def nltk_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``NLTK_DATA`` pointing at a folder the English frontend builds on first use."""
    folder = tmp_path_factory.mktemp("nltk_data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NLTK_DATA", str(folder))
        yield folder


@pytest.fixture(scope="session")
def english(nltk_data: Path) -> Frontend:
    return build("frontend", {"name": "g2p_en"})


@pytest.fixture(scope="session")
def mandarin() -> Frontend:
    return build("frontend", {"name": "pypinyin"})


@pytest.fixture(scope="session")
def multilingual(nltk_data: Path) -> Frontend:
    return build("frontend", {"name": "multilingual",
                              "languages": {"en": {"name": "g2p_en"}, "zh": {"name": "pypinyin"}}})

