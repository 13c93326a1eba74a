"""OmegaConf's validation errors as one line naming the file, the dotted key and the fix."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from mmcl.core.registry import ConfigError, closest


def structured(schema: type, data: Any, where: str, path: str):
    """Merge ``data`` into ``schema``; re-raise OmegaConf errors as ConfigError naming file and key."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), data)
        return OmegaConf.to_object(merged)
    except ConfigError as err:  # a config dataclass's own check (__post_init__): say where it failed
        raise ConfigError(f"{path}: {where}: {err}") from None
    except OmegaConfBaseException as err:
        inner = str(err.full_key or "")
        key = ".".join(p for p in (where, inner) if p)
        if isinstance(err, ConfigKeyError):
            bad = inner.rsplit(".", 1)[-1]
            valid = fields_at(schema, inner.rpartition(".")[0])
            hint = closest(bad, valid) or f"; valid keys: {', '.join(valid)}"
            raise ConfigError(f"{path}: {key}: unknown key '{bad}'{hint}") from None
        expected = describe(type_at(schema, inner))
        if isinstance(err, MissingMandatoryValue):
            raise ConfigError(f"{path}: {key}: required value is missing; set it to {expected}") from None
        if isinstance(err, ValidationError) and expected:
            raise ConfigError(f"{path}: {key}: expected {expected}, got {err.value!r}") from None
        raise ConfigError(f"{path}: {key}: {str(err).splitlines()[0]}") from None


def settings_type(kind: Any) -> Any:
    """The dataclass of an optional settings section (``X | None`` -> ``X``); other types as they are."""
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        inner = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(inner) == 1 and hasattr(inner[0], "__dataclass_fields__"):
            return inner[0]
    return kind


def type_at(schema: type, dotted: str) -> Any:
    """The declared type at ``dotted`` (a path inside ``schema``, e.g. ``grid.seeds[0]``); None if unknown."""
    node: Any = schema
    for part in re.findall(r"[^.\[\]]+", dotted):
        node = settings_type(node)
        if typing.get_origin(node) in (dict, list):  # a user-chosen key or an index: step into the values
            node = typing.get_args(node)[-1]
        elif hasattr(node, "__dataclass_fields__"):
            node = typing.get_type_hints(node).get(part)
        else:
            return None
    return node


def fields_at(schema: type, dotted: str) -> list[str]:
    """Field names of the dataclass that ``dotted`` (a path inside ``schema``) points into."""
    node = settings_type(type_at(schema, dotted))
    if typing.get_origin(node) in (dict, list):
        node = typing.get_args(node)[-1]
    return list(getattr(node, "__dataclass_fields__", []))


def describe(kind: Any) -> str:
    """'an integer', 'a list', 'a number or null', ... for a declared type ('' when unknown)."""
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        return " or ".join(describe(arg) for arg in typing.get_args(kind))
    if hasattr(kind, "__dataclass_fields__"):
        return "a mapping of settings"
    words = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    words |= {list: "a list, e.g. [a, b]", dict: "a mapping (key: value)"}
    return words.get(typing.get_origin(kind) or kind, "")


def check_name(name: str, known, where: str, what: str, path: str) -> None:
    if name not in known:
        raise ConfigError(
            f"{path}: {where}: unknown {what} '{name}'{closest(name, known)}; defined: {', '.join(sorted(known))}"
        )


def check_once(items: list, i: int, key: str, path: str) -> None:
    """A name listed twice would run (or train) the same thing twice."""
    if items[i] in items[:i]:
        raise ConfigError(
            f"{path}: {key}[{i}]: '{items[i]}' is already listed at {key}[{items.index(items[i])}]; list it once"
        )
