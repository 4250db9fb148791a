"""Shared fixtures: an installed copy of the fake third-party plugin package, one torch thread."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

FAKE_PLUGIN_SOURCE = Path(__file__).parent / "fake_plugin"


@pytest.fixture(scope="session")
def fake_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` the fake plugin into a temporary folder and return that folder.

    Prepending it to ``sys.path`` (see ``fake_plugin``) makes ``importlib.metadata`` see the
    package's ``speechkit.codec`` entry point, exactly as after ``pip install`` into a venv.
    """
    import shutil

    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    source = shutil.copytree(FAKE_PLUGIN_SOURCE, build / "speechkit-fake-plugin")  # keep the tree clean
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True,
        cwd=build,
    )
    return target


@pytest.fixture
def fake_plugin(fake_plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake plugin made importable and discoverable for one test (undone afterwards)."""
    monkeypatch.syspath_prepend(str(fake_plugin_site))
    monkeypatch.delenv("SPEECHKIT_NO_PLUGINS", raising=False)
    from speechkit.registry import CODEC

    yield fake_plugin_site
    CODEC._classes.pop("band_energy", None)
    for name in [m for m in sys.modules if m.startswith("speechkit_fake_plugin")]:
        del sys.modules[name]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tests run two per machine (pytest -n 2): one torch thread each avoids oversubscription."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Every test runs on one torch thread, and a test that changes the count cannot leak it:
    tiny models are fastest on one thread and the CI machine is shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                              reason="needs a CUDA device"))]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each test that takes it runs on the CPU and, where torch sees one, on a CUDA device:
    the same assertions on both (the device paths: placement, generators, synchronisation)."""
    return torch.device(request.param)

