"""Registry: built-in lookup, runtime registration, entry-point plugins, clashes, errors."""
from __future__ import annotations

import dataclasses

import pytest

from speechkit.errors import ConfigError, PluginError
from speechkit.interfaces import Codec, Scorer
from speechkit.registry import CODEC, KINDS, SCORER, Registry, build, registry


class _NoConfigScorer(Scorer):
    metrics = ("x",)

    def score(self, items):  # pragma: no cover - never built
        return []


def test_every_kind_has_a_registry_with_its_interface():
    assert set(KINDS) == {"codec", "frontend", "ar_lm", "nar_lm", "st_frontend", "vocoder", "scorer"}
    for kind in KINDS:
        assert registry(kind).group == f"speechkit.{kind}"


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(PluginError, match="kinds are: codec"):
        registry("codecs")


def test_listing_builtins_imports_nothing_heavy():
    import sys

    before = set(sys.modules)
    names = CODEC.names()
    assert "mel_rvq" in names and "encodec" in names
    assert not any(m.startswith("speechkit.plugins.codec.") for m in set(sys.modules) - before)


def test_unknown_name_suggests_close_matches_and_install():
    with pytest.raises(PluginError) as info:
        CODEC.get("mel_rqv")
    message = str(info.value)
    assert "'mel_rvq'" in message and "pip install" in message and "speechkit.codec" in message


def test_register_requires_interface_and_config():
    local = Registry("scorer", Scorer)
    with pytest.raises(PluginError, match="must subclass"):
        local.register("bad")(dict)

    class NotADataclassConfig(_NoConfigScorer):
        class Config:  # a plain class: options could not be validated
            pass

    with pytest.raises(PluginError, match="nested dataclass named Config"):
        local.register("noconf")(NotADataclassConfig)


def test_same_name_twice_is_an_error():
    local = Registry("codec", Codec)

    @local.register("dup")
    class First(_Tiny):
        pass

    with pytest.raises(PluginError, match="registered twice"):

        @local.register("dup")
        class Second(_Tiny):
            pass


class _Tiny(Codec):
    @dataclasses.dataclass
    class Config:
        levels: int = 2
        rate: int = 100

    sample_rate = property(lambda self: self.config.rate)
    frame_rate = property(lambda self: 10.0)
    num_quantizers = property(lambda self: self.config.levels)
    codebook_size = property(lambda self: 4)

    def __init__(self, config=None, **context):
        super().__init__(config)
        self.context = context

    def encode(self, wav):  # pragma: no cover
        raise NotImplementedError

    def decode(self, codes):  # pragma: no cover
        raise NotImplementedError


@pytest.fixture
def tiny_codec():
    CODEC.register("tiny_test_codec")(_Tiny)
    yield _Tiny
    CODEC._classes.pop("tiny_test_codec", None)


def test_build_validates_options_and_passes_context(tiny_codec):
    codec = build("codec", {"name": "tiny_test_codec", "levels": 3}, vocab_size=7)
    assert codec.num_quantizers == 3 and codec.context == {"vocab_size": 7}
    assert codec.spec() == {"name": "tiny_test_codec", "levels": 3, "rate": 100}
    with pytest.raises(ConfigError, match=r"'levles' \(did you mean 'levels'\?\).*Valid keys: levels, rate"):
        build("codec", {"name": "tiny_test_codec", "levles": 3})
    with pytest.raises(ConfigError, match="levels"):
        build("codec", {"name": "tiny_test_codec", "levels": "many"})
    with pytest.raises(ConfigError, match="needs a 'name' key"):
        build("codec", {"levels": 3})


def test_plugin_entry_point_is_listed_and_built(fake_plugin):
    entries = CODEC.entries()
    assert entries["band_energy"].origin == "speechkit-fake-plugin"
    codec = build("codec", {"name": "band_energy", "num_bands": 3})
    assert type(codec).__module__ == "speechkit_fake_plugin.codec"
    assert codec.num_quantizers == 3 and codec.registered_name == "band_energy"


def test_plugins_can_be_disabled(fake_plugin, monkeypatch):
    monkeypatch.setenv("SPEECHKIT_NO_PLUGINS", "1")
    assert "band_energy" not in CODEC.names()
    with pytest.raises(PluginError, match="plugins are disabled"):
        CODEC.get("band_energy")


def test_plugin_clashing_with_builtin_is_reported(fake_plugin_site, tmp_path, monkeypatch):
    """A plugin that declares a built-in's name must not silently shadow it."""
    dist = tmp_path / "clash_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: clash-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[speechkit.codec]\nmel_rvq = clash_plugin:Codec\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SPEECHKIT_NO_PLUGINS", raising=False)
    with pytest.raises(PluginError, match="clash-plugin.*clashes with the builtin"):
        CODEC.names()
    monkeypatch.setenv("SPEECHKIT_NO_PLUGINS", "1")
    assert "mel_rvq" in CODEC.names()


def test_broken_plugin_module_gives_actionable_error(tmp_path, monkeypatch):
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[speechkit.scorer]\nbroken = no_such_module_xyz:Scorer\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SPEECHKIT_NO_PLUGINS", raising=False)
    with pytest.raises(PluginError, match="failed to import.*speechkit doctor"):
        SCORER.get("broken")
