"""Component registries: one per swappable slot (codec, frontend, ar_lm, ...).

Built-in components and third-party plugins register the same way:

* a class is decorated with ``@REGISTRY.register("name")`` in its module;
* built-in modules are listed explicitly in :data:`BUILTIN_MODULES` and imported lazily the
  first time a name is looked up, so ``speechkit list`` never imports torch-heavy code;
* other packages declare an entry point in group ``speechkit.<kind>``, e.g.
  ``speechkit.codec = mycodec = mypkg.codec:MyCodec``; ``pip install`` is all it takes.

A plugin whose name clashes with a built-in (or with another plugin) is reported, never silently
resolved. Setting ``SPEECHKIT_NO_PLUGINS=1`` turns entry-point discovery off for hermetic runs.
Configs name components by registered name only: nothing in a YAML file can import a module path.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
from importlib import metadata
from typing import Any, Callable, Generic, Mapping, TypeVar

from speechkit.errors import ConfigError, PluginError

T = TypeVar("T")

#: Environment variable that disables entry-point plugin discovery when set to a true value.
NO_PLUGINS_ENV = "SPEECHKIT_NO_PLUGINS"

#: Built-in components: kind -> {registered name: module that registers it}. Listing reads this
#: table only; the module is imported on first lookup.
BUILTIN_MODULES: dict[str, dict[str, str]] = {
    "codec": {
        "mel_rvq": "speechkit.plugins.codec.mel_rvq",
        "encodec": "speechkit.plugins.codec.encodec_codec",
    },
    "frontend": {
        "g2p_en": "speechkit.plugins.frontend.english",
        "pypinyin": "speechkit.plugins.frontend.mandarin",
        "multilingual": "speechkit.plugins.frontend.multilingual",
    },
    "ar_lm": {"valle_ar": "speechkit.plugins.ar_lm.valle_ar", "aligned_ar": "speechkit.plugins.ar_lm.aligned_ar"},
    "nar_lm": {
        "valle_nar": "speechkit.plugins.nar_lm.valle_nar",
        "continuous_nar": "speechkit.plugins.nar_lm.continuous_nar",
    },
    "st_frontend": {"transformer_st": "speechkit.plugins.st_frontend.transformer_st"},
    "vocoder": {
        "griffin_lim": "speechkit.plugins.vocoder.griffin_lim",
        "convnext_istft": "speechkit.plugins.vocoder.convnext_istft",
    },
    "scorer": {
        "whisper_wer": "speechkit.plugins.scorer.whisper_wer",
        "resemblyzer_sim": "speechkit.plugins.scorer.resemblyzer_sim",
        "speaker_margin": "speechkit.plugins.scorer.speaker_margin",
        "ctc_cer": "speechkit.plugins.scorer.ctc_cer",
        "asr_bleu": "speechkit.plugins.scorer.asr_bleu",
        "dnsmos": "speechkit.plugins.scorer.dnsmos",
    },
}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def plugins_enabled() -> bool:
    """Whether entry-point plugins are discovered (``SPEECHKIT_NO_PLUGINS`` unset or false)."""
    return not _truthy(os.environ.get(NO_PLUGINS_ENV))


@dataclasses.dataclass(frozen=True)
class Entry:
    """Where a registered name comes from, known without importing it."""

    kind: str
    name: str
    origin: str  # "builtin" or the distribution name of the plugin package
    target: str  # "module" (builtin) or "module:attr" (entry point)


class Registry(Generic[T]):
    """Names -> component classes for one kind, checked against the kind's interface.

    Args:
        kind: slot name, e.g. ``"codec"``; the entry-point group is ``speechkit.<kind>``.
        interface: abstract base class every registered component must subclass.
    """

    def __init__(self, kind: str, interface: type) -> None:
        self.kind = kind
        self.interface = interface
        self.group = f"speechkit.{kind}"
        self._classes: dict[str, type] = {}

    # -- registration ------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator registering ``cls`` under ``name`` (a built-in or a plugin)."""

        def decorator(cls: type[T]) -> type[T]:
            self._check_component(name, cls)
            existing = self._classes.get(name)
            if existing is not None and existing is not cls:
                raise PluginError(
                    f"{self.kind} {name!r} is registered twice: by {_qualname(existing)} and by "
                    f"{_qualname(cls)}. Rename one of them (names may carry a version, e.g. "
                    f"'{name}.v2')."
                )
            self._classes[name] = cls
            cls.registered_name = name  # type: ignore[attr-defined]
            return cls

        return decorator

    def _check_component(self, name: str, cls: type) -> None:
        if not isinstance(cls, type) or not issubclass(cls, self.interface):
            raise PluginError(
                f"{self.kind} {name!r}: {cls!r} must subclass {_qualname(self.interface)}."
            )
        config_cls = getattr(cls, "Config", None)
        if config_cls is None or not dataclasses.is_dataclass(config_cls):
            raise PluginError(
                f"{self.kind} {name!r}: {_qualname(cls)} needs a nested dataclass named Config "
                "holding its options (an empty dataclass is fine)."
            )

    # -- discovery ---------------------------------------------------------------------------
    def entries(self) -> dict[str, Entry]:
        """All known names for this kind, without importing any component module.

        Raises:
            PluginError: if a plugin's name clashes with a built-in or another plugin.
        """
        found: dict[str, Entry] = {
            name: Entry(self.kind, name, "builtin", module)
            for name, module in BUILTIN_MODULES.get(self.kind, {}).items()
        }
        for name, cls in self._classes.items():  # registered at run time (tests, notebooks)
            found.setdefault(name, Entry(self.kind, name, "runtime", cls.__module__))
        if not plugins_enabled():
            return found
        for ep in _entry_points(self.group):
            dist = ep.dist.name if getattr(ep, "dist", None) is not None else "unknown"
            if ep.name in found and found[ep.name].target.split(":")[0] != ep.value.split(":")[0]:
                clash = found[ep.name]
                raise PluginError(
                    f"{self.kind} {ep.name!r} from plugin package {dist!r} ({ep.value}) clashes "
                    f"with the {clash.origin} one ({clash.target}). Uninstall one of them or ask "
                    f"the plugin author to rename it; set {NO_PLUGINS_ENV}=1 to ignore plugins."
                )
            found[ep.name] = Entry(self.kind, ep.name, dist, ep.value)
        return found

    def names(self) -> list[str]:
        """Sorted registered names (built-ins and plugins)."""
        return sorted(self.entries())

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``, importing its module on first use.

        Raises:
            PluginError: unknown name (with close matches and the install hint) or a plugin
                module that fails to import.
        """
        if name in self._classes:
            return self._classes[name]
        entries = self.entries()
        entry = entries.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, list(entries), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise PluginError(
                f"No {self.kind} named {name!r}.{hint} Known: {', '.join(sorted(entries)) or 'none'}. "
                f"If it comes from a plugin package, install it (pip install <package>) so that it "
                f"declares an entry point in group {self.group!r}"
                + (f"; plugins are disabled because {NO_PLUGINS_ENV} is set." if not plugins_enabled() else ".")
            )
        self._load(entry)
        if name not in self._classes:
            raise PluginError(
                f"{self.kind} {name!r}: {entry.target} was imported but did not register "
                f"{name!r}. Decorate the class with @speechkit.registry.{self.kind.upper()}.register({name!r})."
            )
        return self._classes[name]

    def _load(self, entry: Entry) -> None:
        module_name, _, attr = entry.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise PluginError(
                f"{self.kind} {entry.name!r} needs {module_name!r}, which failed to import: {error}. "
                "Run `speechkit doctor` to see which optional dependency is missing."
            ) from error
        if attr:  # entry point: the attribute is the class; register it if its module did not
            cls = getattr(module, attr)
            if entry.name not in self._classes:
                self.register(entry.name)(cls)

    # -- construction ------------------------------------------------------------------------
    def config_class(self, name: str) -> type:
        """The Config dataclass of component ``name``."""
        return self.get(name).Config  # type: ignore[attr-defined]

    def build(self, spec: Mapping[str, Any] | Any, **context: Any) -> T:
        """Build a component from a mapping ``{name: ..., <options>}``.

        Options are validated against the component's ``Config`` dataclass (a misspelled key or
        a wrong type is a :class:`ConfigError` naming the valid keys). ``context`` carries values
        the component needs from its neighbours (e.g. ``vocab_size``), passed explicitly by the
        pipeline builder and forwarded as keyword arguments to the constructor.
        """
        from speechkit.config import as_plain_dict, validate_options

        options = as_plain_dict(spec)
        if "name" not in options:
            raise ConfigError(
                f"A {self.kind} section needs a 'name' key; known {self.kind}s: "
                f"{', '.join(self.names())}."
            )
        name = str(options.pop("name"))
        cls = self.get(name)
        config = validate_options(cls.Config, options, where=f"{self.kind} {name!r}")  # type: ignore[attr-defined]
        return cls(config, **context)


def _entry_points(group: str) -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=group))


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _make_registries() -> dict[str, Registry[Any]]:
    from speechkit import interfaces as itf

    return {
        "codec": Registry("codec", itf.Codec),
        "frontend": Registry("frontend", itf.Frontend),
        "ar_lm": Registry("ar_lm", itf.ARLanguageModel),
        "nar_lm": Registry("nar_lm", itf.NARLanguageModel),
        "st_frontend": Registry("st_frontend", itf.STFrontend),
        "vocoder": Registry("vocoder", itf.Vocoder),
        "scorer": Registry("scorer", itf.Scorer),
    }


REGISTRIES: dict[str, Registry[Any]] = _make_registries()
CODEC = REGISTRIES["codec"]
FRONTEND = REGISTRIES["frontend"]
AR_LM = REGISTRIES["ar_lm"]
NAR_LM = REGISTRIES["nar_lm"]
ST_FRONTEND = REGISTRIES["st_frontend"]
VOCODER = REGISTRIES["vocoder"]
SCORER = REGISTRIES["scorer"]
KINDS: tuple[str, ...] = tuple(REGISTRIES)


def registry(kind: str) -> Registry[Any]:
    """The registry of ``kind``; an unknown kind is a :class:`PluginError` listing the kinds."""
    try:
        return REGISTRIES[kind]
    except KeyError:
        raise PluginError(f"Unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}.") from None


def build(kind: str, spec: Mapping[str, Any] | Any, **context: Any) -> Any:
    """Shorthand for ``registry(kind).build(spec, **context)``."""
    return registry(kind).build(spec, **context)
