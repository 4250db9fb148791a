"""ctc_cer (PER with the recipe's own ST CTC) and the phone helpers, with a fake ST that
"recognises" fixed phones, loaded directly and through a model pack."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from speechkit import registry
from speechkit.errors import DataError
from speechkit.interfaces.frontend import Phone, PhoneSequence
from speechkit.interfaces.scorer import ScoreItem
from speechkit.interfaces.st import STFrontend
from speechkit.pack import save_pack
from speechkit.plugins.scorer.phone_recognition import phone_tokens
from speechkit.registry import ST_FRONTEND
from speechkit.testing import check_scorer

FAKE_ST = "fixed_phones_st_test"
REFERENCE = "你好，世界。"  # pypinyin: n i2 h ao3 <sp> sh iii4 j ie4 <sil>
REFERENCE_TOKENS = ["zh:n", "zh:i2", "zh:h", "zh:ao3", "zh:sh", "zh:iii4", "zh:j", "zh:ie4"]


class FixedPhonesST(nn.Module, STFrontend):
    """Returns ``config.phones`` (phone-table tokens) for any audio; counts its calls."""

    @dataclasses.dataclass
    class Config:
        phones: list = dataclasses.field(default_factory=list)

    calls = 0

    def __init__(self, config: "FixedPhonesST.Config | None" = None, **context: Any) -> None:
        nn.Module.__init__(self)
        STFrontend.__init__(self, config)
        self.register_buffer("marker", torch.zeros(1))  # a state dict for the pack

    def recognize(self, wav: torch.Tensor, sample_rate: int) -> PhoneSequence:
        assert wav.ndim == 1 and sample_rate > 0
        type(self).calls += 1
        return [Phone.from_token(token) for token in self.config.phones]

    def translate(self, wav: torch.Tensor, sample_rate: int, target_lang: str) -> PhoneSequence:
        return self.recognize(wav, sample_rate)


@pytest.fixture
def fake_st() -> Iterator[type[FixedPhonesST]]:
    ST_FRONTEND.register(FAKE_ST)(FixedPhonesST)
    FixedPhonesST.calls = 0
    yield FixedPhonesST
    ST_FRONTEND._classes.pop(FAKE_ST, None)


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000), 16000)
    return path


def _st(phones: list[str]) -> FixedPhonesST:
    return registry.build("st_frontend", {"name": FAKE_ST, "phones": phones})


def test_phone_tokens_drop_boundaries_and_optionally_tones() -> None:
    phones = [Phone("n", "zh"), Phone("i2", "zh"), Phone("<sp>", "-"), Phone("AH0", "en")]
    assert phone_tokens(phones) == ["zh:n", "zh:i2", "en:AH0"]
    assert phone_tokens(phones, keep_tones=False) == ["zh:n", "zh:i", "en:AH0"]
    assert phone_tokens(phones, keep_boundaries=True)[2] == "<sp>"


def test_per_counts_phone_edits(fake_st: type, tone: Path) -> None:
    # one substitution (ao3 -> ao2) and one deletion (ie4) over 8 reference phones
    recognised = ["zh:n", "zh:i2", "zh:h", "zh:ao2", "<sil>", "zh:sh", "zh:iii4", "zh:j"]
    scorer = registry.build("scorer", {"name": "ctc_cer"}, frontend={"name": "pypinyin"}, st_frontend=_st(recognised))
    item = ScoreItem("a", tone, "zh", REFERENCE)
    (score,) = scorer.score([item])
    assert score == {"per": pytest.approx(2 / 8), "phone_errors": 2.0, "ref_phones": 8.0}
    assert scorer.hypotheses["a"].split() == [t for t in recognised if t != "<sil>"]
    toneless = registry.build("scorer", {"name": "ctc_cer", "keep_tones": False},
                              frontend={"name": "pypinyin"}, st_frontend=_st(recognised))
    assert toneless.score([item])[0]["per"] == pytest.approx(1 / 8)
    check_scorer(scorer, [item])


def test_summary_pools_phones(fake_st: type) -> None:
    scorer = registry.build("scorer", {"name": "ctc_cer"}, st_frontend=_st([]))
    scores = [{"per": 1.0, "phone_errors": 2.0, "ref_phones": 2.0}, {"per": 0.0, "phone_errors": 0.0, "ref_phones": 18.0}]
    assert scorer.summarize([], scores)["per"] == pytest.approx(0.1)


def test_loads_the_st_model_from_a_pack_once(fake_st: type, tone: Path, tmp_path: Path) -> None:
    pack = save_pack(tmp_path / "st" / "pack", {"st_frontend": _st(REFERENCE_TOKENS)})
    scorer = registry.build("scorer", {"name": "ctc_cer", "pack": str(pack), "frontend": {"name": "pypinyin"}})
    items = [ScoreItem("a", tone, "zh", REFERENCE), ScoreItem("b", tone, "zh", "你好")]
    right, shorter_reference = scorer.score(items)
    assert right["per"] == 0.0
    assert shorter_reference["phone_errors"] == 4.0  # 4 insertions against n i2 h ao3
    assert fake_st.calls == 1  # same wav path: recognised once, then cached


def test_clear_errors(fake_st: type, tone: Path, tmp_path: Path) -> None:
    missing = registry.build("scorer", {"name": "ctc_cer", "pack": str(tmp_path / "nope")}, frontend={"name": "pypinyin"})
    with pytest.raises(DataError, match="stage 6"):
        missing.score([ScoreItem("a", tone, "zh", REFERENCE)])
    scorer = registry.build("scorer", {"name": "ctc_cer"}, frontend={"name": "pypinyin"}, st_frontend=_st([]))
    with pytest.raises(DataError, match="no reference text"):
        scorer.score([ScoreItem("a", tone, "zh", " ")])
