"""Short content hashes of params sections: rerun triggers of the workflow's jobs and artifact keys."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Settings left out of the fingerprint of their section (`*`: any entry's name): none of them changes what
# the jobs that fingerprint triggers compute. The alignment stage has its own job and fingerprint
# (`suites.<name>.alignment`); `size` is a report label; the rest decide how fast a job runs and in how
# much memory, not its result (beyond floating-point rounding). So adding them re-ran no existing result.
UNFINGERPRINTED = {
    "suites.*": {"alignment"},
    "backbones.*": {"size", "attn_implementation", "feature_cache"},
    "train": {"micro_batch_size", "gradient_checkpointing", "checkpoint_every", "checkpoint_minutes", "num_workers"},
}

# Results-relevant settings added after results existed, each with its default: hashed only when set to
# another value, so that adding one re-runs no finished job (its fingerprint is the one it had before).
HASHED_WHEN_SET = {
    "train": {"group_by_length": False},
}


def digest(obj: Any) -> str:
    """Short hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def to_plain(obj: Any) -> Any:
    """Dataclasses/DictConfigs -> JSON-able dicts and lists."""
    if isinstance(obj, DictConfig):
        return OmegaConf.to_container(obj, resolve=True)
    if hasattr(obj, "__dataclass_fields__"):
        return {k: to_plain(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    return obj


def fingerprint(plain: dict, *sections: str) -> str:
    """Hash of the named sections (dotted paths) of the plain params."""
    return digest({section: fingerprinted(plain, section) for section in sections})


def fingerprinted(plain: dict, section: str) -> Any:
    """The value a fingerprint hashes for ``section``: an entry without its unfingerprinted settings, nor the
    ``HASHED_WHEN_SET`` ones at their default."""
    node = lookup(plain, section)
    top, _, name = section.partition(".")
    left_out = UNFINGERPRINTED.get(section, set())
    if name in plain.get(top, {}):
        left_out = left_out | UNFINGERPRINTED.get(f"{top}.*", set())
    if isinstance(node, dict):
        defaults = HASHED_WHEN_SET.get(section, {})
        node = {
            key: value
            for key, value in node.items()
            if key not in left_out and not (key in defaults and value == defaults[key])
        }
    return node


def lookup(node: dict, dotted: str) -> Any:
    """The value at a dotted path whose keys may contain dots themselves (a backbone `llama-3.2-1b`)."""
    parts = dotted.split(".")
    start = 0
    while start < len(parts):
        # the longest key that matches here, so that `backbones.llama-3.2-1b` finds its entry
        end = next((e for e in range(len(parts), start, -1) if ".".join(parts[start:e]) in node), None)
        if end is None:
            raise KeyError(f"{dotted}: no key {'.'.join(parts[start:])!r} here")
        node, start = node[".".join(parts[start:end])], end
    return node
