"""Exceptions speechkit raises for problems a user can fix. Each message names the input and the fix."""
from __future__ import annotations


class SpeechkitError(Exception):
    """Base class: a problem with the user's input, config or environment (not a bug)."""


class ConfigError(SpeechkitError, ValueError):
    """A config file or option is invalid (unknown key, wrong type, missing section)."""


class PluginError(SpeechkitError, LookupError):
    """A component name is unknown, clashes with another, or its package is missing."""


class DataError(SpeechkitError, ValueError):
    """A data directory, transcript or audio file is invalid."""


class AudioError(DataError):
    """An audio file is unreadable, empty, silent, too long or otherwise unusable."""


class TextError(DataError):
    """A text is empty, has nothing pronounceable, or is in an unsupported language."""


class MissingDependencyError(SpeechkitError, ImportError):
    """An optional package, system tool or weight file is missing; the message says how to get it."""


def describe_error(error: BaseException) -> str:
    """``"TypeName: first line of the message"``, or the type name alone when there is no message
    (``EOFError()``): for messages that wrap an exception from a library."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
