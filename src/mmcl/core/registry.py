"""Name -> implementation registries: methods, backbone families, task families, generators, dataset
adapters and analyses.

Every registered class carries a typed config dataclass, so ``params.yaml`` entries are validated
against it. Registered modules must stay light at import time (no torch at module level): the
Snakefile validates the config on every parse, including once per cluster job.

Besides the modules of its package, a registry holds what *plugins* register: Python files outside the
package, named by ``plugins:`` in params.yaml and imported by ``import_plugins`` before the config is
validated, so that a new method (or backbone family, task family, analysis) is one file plus its entry.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
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


PLUGIN_PACKAGE = "mmcl_plugins"  # the modules' names in sys.modules: mmcl_plugins.<file stem>


def import_plugins(paths: Iterable[Path], where: str) -> None:
    """Import each plugin file, or every ``*.py`` of a plugin directory (in name order), once per process;
    the registry decorators in them register what they define. ``where`` names the setting for errors."""
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{where}: no such file or directory '{path}'; give a .py file or a directory of them")
        for file in sorted(path.glob("*.py")) if path.is_dir() else [path]:
            name = f"{PLUGIN_PACKAGE}.{file.stem}"
            loaded = sys.modules.get(name)
            if loaded is not None:
                if Path(loaded.__file__).resolve() != file.resolve():
                    raise ConfigError(f"{where}: two plugins are named '{file.stem}' ({loaded.__file__}, {file})")
                continue
            spec = importlib.util.spec_from_file_location(name, file)
            if spec is None or file.suffix != ".py":
                raise ConfigError(f"{where}: '{file}' is not a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception:
                del sys.modules[name]
                raise
