"""Every built-in frontend passes the plugin contract of speechkit.testing."""
from __future__ import annotations

import pytest

from speechkit.interfaces.frontend import Frontend
from speechkit.testing import check_frontend

SAMPLES = {"en": "The quick brown fox, 2 days ago.", "zh": "我们一起去北京，好吗？"}


@pytest.mark.parametrize("fixture", ["english", "mandarin"])
def test_single_language_frontends(fixture: str, request: pytest.FixtureRequest) -> None:
    frontend: Frontend = request.getfixturevalue(fixture)
    check_frontend(frontend, {lang: SAMPLES[lang] for lang in frontend.languages})


def test_multilingual_frontend(multilingual: Frontend) -> None:
    check_frontend(multilingual, SAMPLES)
