"""Model packs: trained components saved with the config that rebuilds them, loadable safely.

A pack is a **directory**::

    <pack>/pack.yaml        manifest: format, components (registered name + options per kind),
                            context (constructor values per kind), origins (package + version
                            of each component), versions (speechkit, torch, python), extra
    <pack>/<kind>.pt        state dict of an ``nn.Module`` component (plain tensors)
    <pack>/<kind>/          directory written by a component's own ``save`` (codecs, vocoders,
                            :class:`~speechkit.interfaces.Trainable` components)

Loading reads the manifest with ``yaml.safe_load``, rebuilds each component by registered name
through :func:`speechkit.registry.build` (options validated against its ``Config``), and restores
weights with ``torch.load(..., weights_only=True)``: nothing in a pack can run code. A component
whose plugin is not installed is a :class:`~speechkit.errors.PluginError` naming the plugin and
the package that provided it. A pack is written to a temporary sibling and renamed into place,
so an interrupted save never leaves a half-written pack.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

import speechkit
from speechkit.errors import ConfigError, DataError, PluginError, SpeechkitError, describe_error
from speechkit.registry import registry

MANIFEST = "pack.yaml"
FORMAT = 1


@dataclasses.dataclass
class Pack:
    """A loaded pack: built components by kind, plus what the manifest recorded."""

    path: Path
    components: dict[str, Any]
    context: dict[str, dict[str, Any]]
    versions: dict[str, str]
    extra: dict[str, Any]

    def __getitem__(self, kind: str) -> Any:
        """The component of ``kind`` (e.g. ``pack["ar_lm"]``)."""
        try:
            return self.components[kind]
        except KeyError:
            raise PluginError(
                f"Pack {self.path} has no {kind!r} component; it holds {', '.join(self.components)}."
            ) from None


def save_pack(
    path: str | Path,
    components: Mapping[str, Any],
    context: Mapping[str, Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``components`` (kind -> registered component instance) as a pack directory.

    Args:
        path: pack directory (replaced atomically if it exists).
        components: e.g. ``{"ar_lm": ar_model, "nar_lm": nar_model, "codec": codec}``; each must
            be an instance of a registered component (it has ``spec()`` and ``registered_name``).
        context: per kind, the keyword values its constructor needs from its neighbours, e.g.
            ``{"ar_lm": {"num_phones": 120, "codebook_size": 256, "num_languages": 2}}``.
            Plain YAML values only.
        extra: free-form plain metadata (training steps, phone table path, metrics, ...).

    Returns:
        The pack directory.
    """
    path = Path(path)
    context = {kind: _plain(dict(values)) for kind, values in (context or {}).items()}
    unknown_context = set(context) - set(components)
    if unknown_context:
        raise ConfigError(f"save_pack: context given for {sorted(unknown_context)} but no such component.")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "components": {},
        "context": context,
        "origins": {},
        "versions": _versions(),
        "extra": dict(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    staging.chmod(0o755)
    try:
        for kind, component in components.items():
            manifest["components"][kind] = _component_spec(kind, component)
            manifest["origins"][kind] = _origin(kind, manifest["components"][kind]["name"])
            _save_state(component, staging, kind)
        try:
            text = yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True)
        except yaml.YAMLError as error:
            raise ConfigError(f"save_pack: context/extra/options must be plain YAML values: {error}") from error
        (staging / MANIFEST).write_text(text, encoding="utf-8")
        _replace_directory(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the pack at ``path`` (nothing is built or imported).

    Raises:
        DataError: not a pack directory, unreadable manifest, or an unsupported format.
    """
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.is_file():
        raise DataError(f"{path} is not a model pack: {MANIFEST} is missing.")
    try:
        manifest = yaml.safe_load(manifest_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise DataError(f"Cannot parse {manifest_path}: {error}. The pack is damaged: assemble or copy it again.") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(
            f"{manifest_path} has format {manifest.get('format') if isinstance(manifest, dict) else None!r}; "
            f"this speechkit ({speechkit.__version__}) reads format {FORMAT}."
        )
    return manifest


def load_pack(
    path: str | Path, *, kinds: list[str] | None = None, device: str | torch.device = "cpu"
) -> Pack:
    """Rebuild the components of a pack (all, or only ``kinds``), weights restored, in eval mode.

    Raises:
        PluginError: a component's plugin is not installed (names it and its package).
        DataError: missing or unreadable pack files.
    """
    path = Path(path)
    manifest = read_manifest(path)
    specs: dict[str, dict[str, Any]] = manifest["components"]
    wanted = list(specs) if kinds is None else kinds
    missing = [kind for kind in wanted if kind not in specs]
    if missing:
        raise PluginError(f"Pack {path} has no {missing} component(s); it holds {', '.join(specs)}.")
    components = {}
    for kind in wanted:
        context = manifest["context"].get(kind, {})
        try:
            component = registry(kind).build(dict(specs[kind]), **context)
        except PluginError as error:
            origin = manifest["origins"].get(kind, {})
            package = origin.get("package", "unknown")
            source = "" if package in ("builtin", "runtime", "unknown") else (
                f" It came from package {package!r} {origin.get('version', '')}: pip install {package}."
            )
            raise PluginError(
                f"Pack {path} needs {kind} {specs[kind].get('name')!r}, which cannot be built here.{source} "
                f"Registry says: {error}"
            ) from error
        _load_state(component, path, kind, device)
        components[kind] = component
    return Pack(path=path, components=components, context=manifest["context"],
                versions=manifest["versions"], extra=manifest["extra"])


# -- helpers ----------------------------------------------------------------------------------
def _component_spec(kind: str, component: Any) -> dict[str, Any]:
    registry(kind)  # an unknown kind fails here, naming the kinds
    if not isinstance(component, registry(kind).interface) or not getattr(component, "registered_name", ""):
        raise PluginError(
            f"save_pack: the {kind} component {type(component).__name__} is not a registered {kind}; "
            f"register its class with @speechkit.registry.{kind.upper()}.register(name) so a pack can "
            "rebuild it by name."
        )
    return _plain(dict(component.spec()))


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (YAML's safe dumper writes lists, dicts and scalars only)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _has_own_storage(component: Any) -> bool:
    return callable(getattr(component, "save", None)) and callable(getattr(component, "load", None))


def _save_state(component: Any, directory: Path, kind: str) -> None:
    """A component's own ``save`` into ``<kind>/``, else an nn.Module's state dict ``<kind>.pt``."""
    if _has_own_storage(component):
        (directory / kind).mkdir(parents=True, exist_ok=True)  # a component may have nothing to write
        component.save(directory / kind)
    elif isinstance(component, nn.Module):
        state = {name: tensor.detach().cpu() for name, tensor in component.state_dict().items()}
        torch.save(state, directory / f"{kind}.pt")


def _load_state(component: Any, directory: Path, kind: str, device: str | torch.device) -> None:
    if _has_own_storage(component):
        if not (directory / kind).is_dir():
            raise DataError(f"Pack {directory} lacks the {kind}/ directory its {kind} component saved.")
        try:
            component.load(directory / kind)
        except SpeechkitError:
            raise
        except Exception as error:  # a damaged file fails in the component's own reader, in many ways
            raise DataError(f"Pack {directory}: its {kind}/ does not load ({describe_error(error)}). The pack is "
                            "damaged: assemble or copy it again.") from error
    elif isinstance(component, nn.Module):
        weights = directory / f"{kind}.pt"
        if not weights.is_file():
            raise DataError(f"Pack {directory} lacks {weights.name}, the {kind} weights.")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as error:  # UnpicklingError for code objects, zip errors for damage
            raise DataError(
                f"Refusing {weights}: it does not load as plain tensors with weights_only=True "
                f"({describe_error(error)}). It is damaged, or was not written by speechkit.pack.save_pack: "
                "assemble or copy the pack again."
            ) from error
        try:
            component.load_state_dict(state)
        except RuntimeError as error:
            raise DataError(
                f"{weights} does not fit the {kind} rebuilt from the manifest (options or context "
                f"differ from training): {describe_error(error)}"
            ) from error
    if isinstance(component, nn.Module):
        component.to(device).eval()


def _origin(kind: str, name: str) -> dict[str, str]:
    """Which package provides ``kind`` ``name``, and its version."""
    entry = registry(kind).entries().get(name)
    package = entry.origin if entry is not None else "runtime"
    if package in ("builtin", "runtime"):
        return {"package": package, "version": speechkit.__version__ if package == "builtin" else ""}
    try:
        return {"package": package, "version": importlib.metadata.version(package)}
    except importlib.metadata.PackageNotFoundError:
        return {"package": package, "version": ""}


def _versions() -> dict[str, str]:
    return {"speechkit": speechkit.__version__, "torch": str(torch.__version__), "python": platform.python_version()}


def _replace_directory(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``; an existing ``target`` is swapped out, then deleted."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
