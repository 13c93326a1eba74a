"""Typed view of ``params.yaml``: the experiment grid and everything it refers to.

``load_params`` merges the YAML into OmegaConf structured configs, so a misspelt key, a wrong type
or a name that refers to nothing fails at load time with the file, the dotted key and the closest
valid name. Method and backbone entries are validated against the config dataclass of the
implementation they name (``type:`` for methods, ``family:`` for backbones).

This module imports no torch: the Snakefile calls it on every parse.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from mmcl.registry import ConfigError, closest

MODALITIES = ("image", "audio", "video", "text")


@dataclass
class TaskConfig:
    family: str = MISSING  # task family in src/mmcl/data/ (captioning, qa)
    modality: str = MISSING  # image | audio | video | text


@dataclass
class SplitSizes:
    train: int = 2000
    test: int = 100
    pretrain: int = 2000  # tagged media per encoder, for backbones whose encoders start random (0: none)


@dataclass
class WorldConfig:
    """Knobs of the procedurally generated world shared by all micl-synth tasks."""

    image_size: int = 32
    sample_rate: int = 16000
    audio_seconds: float = 1.0
    video_frames: int = 4
    max_objects: int = 1
    references_per_caption: int = 3


@dataclass
class SuiteConfig:
    generator: str = "micl_synth"  # a generator in src/mmcl/data/ that writes every task of the suite
    seed: int = 0  # data seed: same seed, same bytes
    sizes: SplitSizes = field(default_factory=SplitSizes)
    world: WorldConfig = field(default_factory=WorldConfig)
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    text_task: str | None = None  # text-only task the tiny backbone's stage-0 LLM is trained on
    orders: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class GridConfig:
    suite: str = MISSING
    orders: list[str] = MISSING
    methods: list[str] = MISSING
    backbones: list[str] = MISSING
    seeds: list[int] = field(default_factory=lambda: [0])


@dataclass
class TrainConfig:
    steps: int = 200  # optimizer steps per stage
    batch_size: int = 16  # global batch (split across processes under accelerate)
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    schedule: str = "cosine"  # constant | linear | cosine
    grad_clip: float = 1.0
    precision: str = "auto"  # auto (bf16 on CUDA when supported, else fp32) | fp32 | bf16 | fp16
    log_every: int = 25
    num_workers: int = 0


@dataclass
class EvalConfig:
    batch_size: int = 64
    max_new_tokens: int = 24
    max_samples: int | None = None  # cap per task test split (None: the whole split)


@dataclass
class Params:
    grid: GridConfig = field(default_factory=GridConfig)
    suites: dict[str, SuiteConfig] = field(default_factory=dict)
    backbones: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    path: str = "params.yaml"  # where these params were read from (set by load_params)

    def suite(self, name: str | None = None) -> SuiteConfig:
        return self.suites[name or self.grid.suite]

    def order(self, name: str, suite: str | None = None) -> list[str]:
        return list(self.suite(suite).orders[name])

    def resolved(self) -> dict:
        """Plain-dict form of the fully resolved params (what every job records beside its outputs)."""
        return to_plain(self)

    def fingerprint(self, *sections: str) -> str:
        """Short hash of the named sections (dotted paths), for rerun triggers and artifact keys."""
        plain = self.resolved()
        picked = {}
        for section in sections:
            node = plain
            for part in section.split("."):
                node = node[part]
            picked[section] = node
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class MethodConfig:
    """Settings every method has; a method's own dataclass extends this."""

    type: str = MISSING  # registered method implementation (defaults to the entry's name)
    lr: float | None = None  # overrides train.lr for this method


@dataclass
class VideoConfig:
    frames: int = 4  # frames sampled per clip, each through the image encoder
    temporal: str = "concat"  # concat (keep every frame's tokens) | mean (average over frames)


@dataclass
class BackboneConfig:
    """Settings every backbone family has; a family's own dataclass extends this."""

    family: str = MISSING
    freeze_encoders: bool = True
    projector_hidden: int | None = None  # MLP width (None: the LLM's hidden size)
    video: VideoConfig = field(default_factory=VideoConfig)


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


def _structured(schema: type, data: Any, where: str, path: str):
    """Merge ``data`` into ``schema``; re-raise OmegaConf errors as ConfigError naming file and key."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), data)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = ".".join(p for p in (where, str(err.full_key or "")) if p)
        if isinstance(err, ConfigKeyError):
            inner = str(err.full_key or "")
            bad = inner.rsplit(".", 1)[-1]
            hint = closest(bad, _fields_at(schema, inner.rpartition(".")[0]))
            raise ConfigError(f"{path}: {key}: unknown key '{bad}'{hint}") from None
        if isinstance(err, ValidationError):
            msg = str(err).splitlines()[0]
            raise ConfigError(f"{path}: {key}: {msg}") from None
        if "Missing mandatory value" in str(err):
            raise ConfigError(f"{path}: {key}: required value is missing") from None
        raise ConfigError(f"{path}: {key}: {str(err).splitlines()[0]}") from None


def _fields_at(schema: type, dotted: str) -> list[str]:
    """Field names of the dataclass that ``dotted`` (a path inside ``schema``) points into."""
    node: Any = schema
    for part in [p for p in dotted.split(".") if p]:
        if typing.get_origin(node) in (dict, list):  # a user-chosen key or an index: step into the values
            node = typing.get_args(node)[-1]
        if not hasattr(node, "__dataclass_fields__"):
            return []
        node = typing.get_type_hints(node).get(part)
    if typing.get_origin(node) in (dict, list):
        node = typing.get_args(node)[-1]
    return list(getattr(node, "__dataclass_fields__", []))


def _check_name(name: str, known, where: str, what: str, path: str) -> None:
    if name not in known:
        raise ConfigError(
            f"{path}: {where}: unknown {what} '{name}'{closest(name, known)}; defined: {', '.join(sorted(known))}"
        )


def _typed_entries(raw: dict, kind_key: str, registry, base: type, section: str, path: str) -> dict:
    """Validate each entry of a name -> settings mapping against its implementation's dataclass."""
    typed = {}
    for name, entry in (raw or {}).items():
        entry = dict(entry or {})
        entry.setdefault(kind_key, name)
        where = f"{section}.{name}"
        impl = registry.get(entry[kind_key], where=f"{path}: {where}.{kind_key}")
        config_class = getattr(impl, "config_class", base)
        typed[name] = _structured(config_class, entry, where, path)
    return typed


def load_params(path: str | Path = "params.yaml", overrides: dict | None = None) -> Params:
    """Read and validate ``params.yaml``; raise ConfigError with file, dotted key and suggestion."""
    from mmcl.data import GENERATORS, TASK_FAMILIES
    from mmcl.methods import METHODS
    from mmcl.models import BACKBONES

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file; run from the project root or pass --params PATH")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if overrides:
        raw = OmegaConf.to_container(OmegaConf.merge(raw, overrides), resolve=True)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")

    fields = Params.__dataclass_fields__
    for key in raw:
        if key not in fields or key == "path":
            raise ConfigError(f"{path}: {key}: unknown section{closest(key, [f for f in fields if f != 'path'])}")

    plain = {k: v for k, v in raw.items() if k not in ("backbones", "methods")}
    params: Params = _structured(Params, plain, "", str(path))
    params.path = str(path)
    params.methods = _typed_entries(raw.get("methods"), "type", METHODS, MethodConfig, "methods", str(path))
    params.backbones = _typed_entries(raw.get("backbones"), "family", BACKBONES, BackboneConfig, "backbones", str(path))
    _cross_check(params, str(path), GENERATORS, TASK_FAMILIES)
    return params


def _cross_check(params: Params, path: str, generators, task_families) -> None:
    """Names that refer to other sections must exist there."""
    for suite_name, suite in params.suites.items():
        where = f"suites.{suite_name}"
        generators.get(suite.generator, where=f"{path}: {where}.generator")
        for task_name, task in suite.tasks.items():
            task_families.get(task.family, where=f"{path}: {where}.tasks.{task_name}.family")
            if task.modality not in MODALITIES:
                _check_name(task.modality, MODALITIES, f"{where}.tasks.{task_name}.modality", "modality", path)
        for order_name, tasks in suite.orders.items():
            if not tasks:
                raise ConfigError(f"{path}: {where}.orders.{order_name}: an order needs at least one task")
            for i, task in enumerate(tasks):
                _check_name(task, suite.tasks, f"{where}.orders.{order_name}[{i}]", "task", path)
            if len(set(tasks)) != len(tasks):
                raise ConfigError(f"{path}: {where}.orders.{order_name}: a task appears twice")
        if suite.text_task is not None:
            _check_name(suite.text_task, suite.tasks, f"{where}.text_task", "task", path)

    grid = params.grid
    _check_name(grid.suite, params.suites, "grid.suite", "suite", path)
    suite = params.suite()
    for key, names, known, what in (
        ("orders", grid.orders, suite.orders, f"order of suite '{grid.suite}'"),
        ("methods", grid.methods, params.methods, "method"),
        ("backbones", grid.backbones, params.backbones, "backbone"),
    ):
        if not names:
            raise ConfigError(f"{path}: grid.{key}: list at least one {what}")
        for i, name in enumerate(names):
            _check_name(name, known, f"grid.{key}[{i}]", what, path)
    if not grid.seeds:
        raise ConfigError(f"{path}: grid.seeds: list at least one seed")
    if params.train.schedule not in ("constant", "linear", "cosine"):
        _check_name(params.train.schedule, ("constant", "linear", "cosine"), "train.schedule", "schedule", path)
    if params.train.precision not in ("auto", "fp32", "bf16", "fp16"):
        _check_name(params.train.precision, ("auto", "fp32", "bf16", "fp16"), "train.precision", "precision", path)
