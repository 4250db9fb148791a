"""`speechkit list | show | doctor` and the testing helpers."""
from __future__ import annotations

import subprocess
import sys

import pytest

from speechkit.cli import main


def test_list_all_kinds(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in ("codec:", "frontend:", "ar_lm:", "nar_lm:", "st_frontend:", "vocoder:", "scorer:"):
        assert kind in out
    assert "mel_rvq" in out and "builtin" in out


def test_list_shows_plugin(fake_plugin, capsys):
    assert main(["list", "codec"]) == 0
    out = capsys.readouterr().out
    assert "band_energy" in out and "speechkit-fake-plugin" in out


def test_show_prints_default_config_as_yaml(fake_plugin, capsys):
    assert main(["show", "codec", "band_energy"]) == 0
    out = capsys.readouterr().out
    assert "name: band_energy" in out and "hop_length: 160" in out and "num_bands: 4" in out


def test_unknown_names_are_clear_errors(capsys):
    assert main(["show", "codec", "no_such_codec"]) == 2
    assert "No codec named 'no_such_codec'" in capsys.readouterr().err
    assert main(["list", "codecs"]) == 2
    assert "kinds are" in capsys.readouterr().err


def test_doctor_reports_system_tools(capsys):
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert "espeak-ng" in out and "python:torch" in out and "encodec" in out
    assert code in (0, 1)


def test_console_script_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "speechkit.cli", "list", "vocoder"], capture_output=True, text=True, check=True
    )
    assert "griffin_lim" in result.stdout
