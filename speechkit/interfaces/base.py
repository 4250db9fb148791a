"""Behaviour shared by every component: a Config dataclass, and optionally fit/save/load."""
from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Any, ClassVar


class Component(abc.ABC):
    """Base of every registered component.

    Subclasses define a nested ``@dataclass class Config`` with their options (validated by the
    registry) and take ``(config, **context)`` in ``__init__``, where ``context`` holds values
    the pipeline passes from neighbouring components (vocab size, sample rate, ...).
    """

    @dataclasses.dataclass
    class Config:
        pass

    #: set by ``Registry.register``
    registered_name: ClassVar[str] = ""

    def __init__(self, config: Any = None, **context: Any) -> None:
        self.config = config if config is not None else type(self).Config()

    def spec(self) -> dict[str, Any]:
        """``{name: <registered name>, **options}``: rebuilds this component via the registry."""
        return {"name": self.registered_name, **dataclasses.asdict(self.config)}


class Trainable(abc.ABC):
    """Mixin for components fitted on data: ``fit`` then ``save``; ``load`` restores the state.

    ``save``/``load`` take a directory; files inside it are the component's business, but
    tensors must load with ``torch.load(..., weights_only=True)`` (no pickled code).
    """

    @property
    def is_fitted(self) -> bool:
        """Whether the component holds trained state (after ``fit`` or ``load``)."""
        return getattr(self, "_fitted", False)

    @abc.abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write the trained state into ``directory`` (created if needed)."""

    @abc.abstractmethod
    def load(self, directory: str | Path) -> None:
        """Restore the trained state written by :meth:`save`."""
