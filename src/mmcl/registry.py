"""Name -> implementation registries for methods, backbone families, task families and generators.

Every registered class carries a typed config dataclass, so ``params.yaml`` entries are validated
against it. Registered modules must stay light at import time (no torch at module level): the
Snakefile validates the config on every parse, including once per cluster job.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A problem in the user's configuration; the message names the file, the key and the fix."""


def closest(name: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest valid choice, or '' when nothing is close."""
    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


class Registry(Generic[T]):
    """Classes registered under a name, each with a ``config_class`` dataclass describing its settings."""

    def __init__(self, kind: str, package: str, shared: tuple[str, ...] = ()):
        self.kind = kind
        # Every module of the package, except the shared (possibly heavy) ones, is imported on first
        # lookup: adding an entry is adding one file.
        self.package = package
        self.shared = shared
        self._entries: dict[str, type[T]] = {}
        self._loaded = False

    def register(self, name: str, config_class: type | None = None) -> Callable[[type[T]], type[T]]:
        def decorate(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            cls.name = name
            if config_class is not None:
                cls.config_class = config_class
            self._entries[name] = cls
            return cls

        return decorate

    def _load(self) -> None:
        if self._loaded:
            return
        module = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(module.__path__):
            if info.name not in self.shared:
                importlib.import_module(f"{self.package}.{info.name}")
        self._loaded = True

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str, where: str = "") -> type[T]:
        self._load()
        if name not in self._entries:
            prefix = f"{where}: " if where else ""
            raise ConfigError(
                f"{prefix}unknown {self.kind} '{name}'{closest(name, self._entries)}; known: {', '.join(self.names())}"
            )
        return self._entries[name]
