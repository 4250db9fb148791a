"""YAML configs: load with includes, merge dotted overrides, validate against Config dataclasses.

A recipe config is a YAML mapping whose sections name components by registered name::

    include: [default.yaml]          # optional: files merged first, relative to this file
    codec: {name: mel_rvq, num_quantizers: 8}

Overrides use omegaconf's dotted syntax (``codec.num_quantizers=4``). Validation turns a
misspelled key into a :class:`~speechkit.errors.ConfigError` that lists the valid keys.
"""
from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from speechkit.errors import ConfigError

C = TypeVar("C")

INCLUDE_KEY = "include"


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> DictConfig:
    """Load ``path`` (following ``include:`` lists, later files win) and apply dotted overrides.

    Raises:
        ConfigError: missing file, YAML syntax error, include cycle or malformed override.
    """
    config = _load_with_includes(Path(path), stack=())
    return apply_overrides(config, overrides)


def _load_with_includes(path: Path, stack: tuple[Path, ...]) -> DictConfig:
    path = path.resolve()
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack, path))
        raise ConfigError(f"Config include cycle: {chain}")
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.")
    try:
        loaded = OmegaConf.load(path)
    except Exception as error:  # yaml.YAMLError and omegaconf errors alike
        raise ConfigError(f"Cannot parse config {path}: {error}") from error
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"Config {path} must be a YAML mapping, not a {type(loaded).__name__}.")
    includes = loaded.pop(INCLUDE_KEY, None) or []
    if isinstance(includes, str):
        includes = [includes]
    merged = OmegaConf.create({})
    for include in includes:
        merged = OmegaConf.merge(merged, _load_with_includes(path.parent / str(include), (*stack, path)))
    return OmegaConf.merge(merged, loaded)  # type: ignore[return-value]


def apply_overrides(config: DictConfig, overrides: Iterable[str]) -> DictConfig:
    """Return ``config`` with ``key.sub=value`` overrides merged in (values parsed as YAML)."""
    overrides = [o for o in overrides if o]
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"Override {override!r} must look like section.key=value.")
    if not overrides:
        return config
    config = _reset_swapped_components(config, overrides)
    try:
        return OmegaConf.merge(config, OmegaConf.from_dotlist(list(overrides)))  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise ConfigError(f"Cannot apply overrides {overrides}: {error}") from error


def _reset_swapped_components(config: DictConfig, overrides: list[str]) -> DictConfig:
    """An override of ``<section>.name`` to another component drops that section's old options.

    The old component's options mean nothing to the new one (and would fail validation), so
    ``codec.name=encodec`` starts from the new component's defaults; other overrides of the same
    section are applied after.
    """
    config = config.copy()
    for override in overrides:
        key, _, value = override.partition("=")
        section, _, leaf = key.rpartition(".")
        if leaf != "name" or not section:
            continue
        node = OmegaConf.select(config, section, default=None)
        if isinstance(node, DictConfig) and str(node.get("name")) != value.strip():
            OmegaConf.update(config, section, {"name": value.strip()}, merge=False)
    return config


def as_plain_dict(spec: Mapping[str, Any] | DictConfig | Any) -> dict[str, Any]:
    """A plain, resolved ``dict`` copy of a mapping or omegaconf node."""
    if isinstance(spec, (DictConfig, ListConfig)):
        return OmegaConf.to_container(spec, resolve=True)  # type: ignore[return-value]
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        return dataclasses.asdict(spec)
    if isinstance(spec, Mapping):
        return dict(spec)
    raise ConfigError(f"Expected a mapping of options, got {type(spec).__name__}: {spec!r}")


def validate_options(config_cls: type[C], options: Mapping[str, Any], where: str = "config") -> C:
    """Check ``options`` against dataclass ``config_cls`` and return an instance.

    Unknown keys and wrong types raise :class:`ConfigError` naming ``where`` and the valid keys.
    Nested dataclass fields accept nested mappings; fields typed ``dict`` accept any mapping
    (used for nested component specs, which their own registry validates).
    """
    options = as_plain_dict(options)
    valid = [f.name for f in dataclasses.fields(config_cls)]  # type: ignore[arg-type]
    unknown = [key for key in options if key not in valid]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, valid, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(
            f"Unknown option{'s' if len(unknown) > 1 else ''} {', '.join(hints)} for {where}. "
            f"Valid keys: {', '.join(valid) or 'none'}."
        )
    try:
        schema = OmegaConf.structured(config_cls)
        merged = OmegaConf.merge(schema, options)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        message = str(error).splitlines()[0]
        raise ConfigError(f"Invalid value for {where}: {message}. Valid keys: {', '.join(valid)}.") from error


def require_minimums(options: Any, prefix: str, minimums: Mapping[str, int]) -> None:
    """Raise :class:`ConfigError` for the first attribute of ``options`` below its minimum, as
    ``"<prefix><name> must be >= <minimum>, got <value>."`` (``prefix``: e.g. ``"align."`` for a
    config section, ``"convnext_istft: "`` for a component)."""
    for name, minimum in minimums.items():
        value = getattr(options, name)
        if not value >= minimum:
            raise ConfigError(f"{prefix}{name} must be >= {minimum}, got {value}.")


def config_to_yaml(config: Any) -> str:
    """YAML text of a dataclass instance/class or a mapping (used by ``speechkit show``)."""
    if isinstance(config, type) and dataclasses.is_dataclass(config):
        return OmegaConf.to_yaml(OmegaConf.structured(config))
    if dataclasses.is_dataclass(config):
        return OmegaConf.to_yaml(OmegaConf.structured(config))
    return OmegaConf.to_yaml(OmegaConf.create(as_plain_dict(config)))


def require_sections(config: DictConfig, sections: Iterable[str], path: str | Path = "config") -> None:
    """Raise :class:`ConfigError` if any top-level ``sections`` are missing from ``config``."""
    missing = [s for s in sections if s not in config]
    if missing:
        raise ConfigError(f"{path} lacks section(s) {', '.join(missing)}; present: {', '.join(config)}.")


def save_config(config: DictConfig | Mapping[str, Any], path: str | Path) -> None:
    """Write the resolved config to ``path`` atomically."""
    from speechkit.utils.fs import atomic_write_text

    node = config if isinstance(config, DictConfig) else OmegaConf.create(as_plain_dict(config))
    atomic_write_text(Path(path), OmegaConf.to_yaml(node, resolve=True))
