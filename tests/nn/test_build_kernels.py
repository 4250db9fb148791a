"""``python -m speechkit.nn.build_kernels`` (run by tools/install.sh)."""
from __future__ import annotations

import os

import pytest

from speechkit.nn import build_kernels, decode_kernel


def test_builds_and_says_where(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_kernels.main() == 0, "a C++ compiler and ninja are installed by tools/install.sh"
    out = capsys.readouterr().out
    assert out.startswith("speechkit CPU kernels: ready in ")
    assert decode_kernel.extension_name() in out and decode_kernel.compiled_kernels() is not None


def test_each_python_environment_builds_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    here = decode_kernel.extension_name()
    assert here.startswith("speechkit_decode_attention_") and here == decode_kernel.extension_name()
    monkeypatch.setattr(decode_kernel.sys, "prefix", "/elsewhere/.venv")
    assert decode_kernel.extension_name() != here


def test_disabled_kernels_are_reported_not_built(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SPEECHKIT_DECODE_KERNEL", "0")
    assert build_kernels.main() == 1
    assert "disabled by SPEECHKIT_DECODE_KERNEL=0" in capsys.readouterr().out


def test_a_failed_build_is_reported(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(build_kernels, "compiled_kernels", lambda: None)
    assert build_kernels.main() == 1
    assert "not built" in capsys.readouterr().out


def test_builds_use_the_ninja_next_to_the_interpreter(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Two ninja versions on one machine (a venv's and /usr/bin's) rebuilt after each other, so the
    build puts the interpreter's own first on PATH, and only while it builds."""
    scripts = tmp_path / "bin"
    scripts.mkdir()
    monkeypatch.setattr(decode_kernel.sys, "executable", str(scripts / "python"))
    monkeypatch.setenv("PATH", "/usr/bin")
    with decode_kernel._interpreter_ninja_first():
        assert os.environ["PATH"] == "/usr/bin"  # no ninja there: PATH as it was
    (scripts / "ninja").write_text("")
    with decode_kernel._interpreter_ninja_first():
        assert os.environ["PATH"].split(os.pathsep) == [str(scripts), "/usr/bin"]
    assert os.environ["PATH"] == "/usr/bin"
