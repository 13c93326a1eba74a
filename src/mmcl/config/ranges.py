"""Allowed values of numeric settings, declared beside each field: ``steps: int = positive(200)``.

``check_ranges`` walks the loaded params (every dataclass, at any depth, methods' and backbones' own
included) and fails on the first value outside its field's range, so a run that cannot work fails at
load, not mid-run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmcl.core.registry import ConfigError

RANGE = "range"  # the field metadata key


@dataclass(frozen=True)
class Range:
    text: str  # how the error message states it, e.g. "> 0"
    holds: Callable[[float], bool]


POSITIVE = Range("> 0", lambda v: v > 0)
NON_NEGATIVE = Range(">= 0", lambda v: v >= 0)
FRACTION = Range("in [0, 1]", lambda v: 0 <= v <= 1)
PROPER_FRACTION = Range("in [0, 1)", lambda v: 0 <= v < 1)


def ranged(default: Any, allowed: Range) -> Any:
    """A dataclass field with ``default`` whose numeric values must lie in ``allowed`` (None is not checked)."""
    return field(default=default, metadata={RANGE: allowed})


def positive(default: Any) -> Any:
    return ranged(default, POSITIVE)


def non_negative(default: Any) -> Any:
    return ranged(default, NON_NEGATIVE)


def check_ranges(node: Any, key: str, path: str) -> None:
    """Raise ConfigError naming ``path`` and the dotted key of the first value outside its field's range."""
    if isinstance(node, dict):
        items = [(name, value, None) for name, value in node.items()]
    elif hasattr(node, "__dataclass_fields__"):
        items = [(name, getattr(node, name), spec) for name, spec in node.__dataclass_fields__.items()]
    else:
        return
    for name, value, spec in items:
        where = f"{key}.{name}" if key else str(name)
        allowed = spec.metadata.get(RANGE) if spec is not None else None
        if allowed and isinstance(value, int | float) and not isinstance(value, bool) and not allowed.holds(value):
            fix = f"e.g. {spec.default} (the default)" if isinstance(spec.default, int | float) else "or remove it"
            raise ConfigError(
                f"{path}: {where}: must be {allowed.text}, got {value}; set a value {allowed.text}, {fix}"
            )
        check_ranges(value, where, path)
