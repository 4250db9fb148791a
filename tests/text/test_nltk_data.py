"""The offline NLTK data builder for g2p_en (no network, idempotent)."""
from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

from speechkit.text import nltk_data
from speechkit.text.nltk_data import CMUDICT_ZIP, TAGGER_DIR, build_nltk_data, is_complete


def test_build_is_complete_and_idempotent(tmp_path: Path) -> None:
    out = build_nltk_data(tmp_path / "nltk")
    assert is_complete(out)
    with zipfile.ZipFile(out / CMUDICT_ZIP) as archive:
        text = archive.read("cmudict/cmudict").decode()
    assert "\nread 1 R EH1 D\nread 2 R IY1 D\n" in text
    tagdict = json.loads((out / TAGGER_DIR / "averaged_perceptron_tagger_eng.tagdict.json").read_text())
    assert tagdict["the"] == "DT" and tagdict["quickly"] == "RB"
    stamp = (out / CMUDICT_ZIP).stat().st_mtime_ns
    started = time.monotonic()
    build_nltk_data(out)
    assert time.monotonic() - started < 1.0 and (out / CMUDICT_ZIP).stat().st_mtime_ns == stamp


def test_nltk_reads_the_built_data(tmp_path: Path, monkeypatch) -> None:
    import nltk
    from nltk.corpus.reader import CMUDictCorpusReader
    from nltk.tag.perceptron import PerceptronTagger

    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))  # undo ensure_nltk_data's insert
    out = nltk_data.ensure_nltk_data(tmp_path / "nltk")
    assert nltk.data.path[0] == str(out)
    reader = CMUDictCorpusReader(nltk.data.find("corpora/cmudict.zip/cmudict/"), ["cmudict"])
    assert reader.dict()["live"] == [["L", "AY1", "V"], ["L", "IH1", "V"]]
    tagger = PerceptronTagger(load=False)
    tagger.load_from_json(loc=nltk.data.find("taggers/averaged_perceptron_tagger_eng/"))
    assert tagger.tag(["the", "cat", "blorptastic"]) == [("the", "DT"), ("cat", "NN"), ("blorptastic", "NN")]


def test_data_dir_follows_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "a"))
    assert nltk_data.nltk_data_dir() == tmp_path / "a"
    monkeypatch.delenv("NLTK_DATA")
    assert nltk_data.nltk_data_dir() == nltk_data.DEFAULT_NLTK_DATA


def test_command_line(tmp_path: Path, capsys) -> None:
    assert nltk_data.main(["--out", str(tmp_path / "cli")]) == 0
    assert is_complete(tmp_path / "cli") and str(tmp_path / "cli") in capsys.readouterr().out
