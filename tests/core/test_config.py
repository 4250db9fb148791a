"""Config loading: includes, overrides, validation errors."""
from __future__ import annotations

import dataclasses
import types

import pytest

from speechkit.config import apply_overrides, config_to_yaml, load_config, require_minimums, validate_options
from speechkit.errors import ConfigError


@dataclasses.dataclass
class Inner:
    depth: int = 2


@dataclasses.dataclass
class Options:
    rate: int = 16000
    name_of_thing: str = "x"
    ratio: float = 0.5
    inner: Inner = dataclasses.field(default_factory=Inner)
    nested_spec: dict = dataclasses.field(default_factory=lambda: {"name": "griffin_lim"})


def test_include_chain_and_override(tmp_path):
    (tmp_path / "base.yaml").write_text("codec: {name: a, levels: 8}\ncorpus: {size: big}\n")
    (tmp_path / "mini.yaml").write_text("include: [base.yaml]\ncorpus: {size: mini}\n")
    config = load_config(tmp_path / "mini.yaml", ["codec.levels=4"])
    assert config.codec.levels == 4 and config.codec.name == "a" and config.corpus.size == "mini"
    assert "include" not in config


def test_include_cycle_and_missing_file(tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_bad_yaml_and_bad_override(tmp_path):
    (tmp_path / "bad.yaml").write_text("codec: [unclosed\n")
    with pytest.raises(ConfigError, match="Cannot parse"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "mini.yaml").write_text("a: 1\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides(load_config(tmp_path / "mini.yaml"), ["novalue"])


def test_validate_options_types_and_nesting():
    options = validate_options(Options, {"rate": 8000, "inner": {"depth": 5}, "nested_spec": {"name": "x", "k": 1}})
    assert options.rate == 8000 and options.inner.depth == 5 and options.nested_spec == {"name": "x", "k": 1}
    assert validate_options(Options, {}).inner.depth == 2


def test_validate_options_errors_name_valid_keys():
    with pytest.raises(ConfigError) as info:
        validate_options(Options, {"rat": 1, "name_of_thign": "y"}, where="codec 'x'")
    message = str(info.value)
    assert "codec 'x'" in message and "did you mean 'rate'" in message and "did you mean 'name_of_thing'" in message
    assert "Valid keys: rate, name_of_thing, ratio, inner, nested_spec" in message
    with pytest.raises(ConfigError, match="Invalid value"):
        validate_options(Options, {"rate": "fast"})
    with pytest.raises(ConfigError, match="depht"):
        validate_options(Options, {"inner": {"depht": 1}})


def test_config_to_yaml_prints_defaults():
    text = config_to_yaml(Options)
    assert "rate: 16000" in text and "depth: 2" in text


def test_overriding_a_component_name_resets_its_options(tmp_path):
    (tmp_path / "c.yaml").write_text("codec: {name: mel_rvq, num_quantizers: 8, vocoder: {name: gl}}\n")
    config = load_config(tmp_path / "c.yaml", ["codec.name=encodec", "codec.bandwidth=6.0"])
    assert dict(config.codec) == {"name": "encodec", "bandwidth": 6.0}
    same = load_config(tmp_path / "c.yaml", ["codec.name=mel_rvq"])
    assert same.codec.num_quantizers == 8
    nested = load_config(tmp_path / "c.yaml", ["codec.vocoder.name=istft"])
    assert dict(nested.codec.vocoder) == {"name": "istft"} and nested.codec.num_quantizers == 8


def test_require_minimums_names_the_first_option_below_its_minimum() -> None:
    options = types.SimpleNamespace(steps=3, threads=-1, layers=0)
    require_minimums(options, "x.", {"steps": 1, "layers": 0})  # at or above: fine
    with pytest.raises(ConfigError, match=r"^x\.threads must be >= 0, got -1\.$"):
        require_minimums(options, "x.", {"steps": 1, "threads": 0, "layers": 1})
