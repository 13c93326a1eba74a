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
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from mmcl.registry import ConfigError, closest

MODALITIES = ("image", "audio", "video", "text")


@dataclass
class TaskConfig:
    family: str = MISSING  # task family in src/mmcl/data/ (captioning, qa)
    modality: str = MISSING  # image | audio | video | text
    dataset: str | None = None  # converted dataset (`datasets:`) it reads, for suites with `generator: datasets`
    metric: str | None = None  # the family's scoring variant (qa: exact | vqa); null: the family's default


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
class AlignmentConfig:
    """The LLaVA-1.5 alignment stage: before the continual stages, only the projector of ``task``'s
    modality learns a captioning task (LLM and encoders frozen). It runs once per (suite, backbone),
    and every run's first stage starts from its checkpoint (mitigation methods apply only from there)."""

    task: str = MISSING  # a captioning task of the suite; in no order, and not evaluated
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0


@dataclass
class SuiteConfig:
    # a generator in src/mmcl/data/generators/ that writes every task of the suite (`datasets`: link each
    # task to its converted dataset)
    generator: str = "micl_synth"
    seed: int = 0  # data seed: same seed, same bytes
    sizes: SplitSizes = field(default_factory=SplitSizes)  # micl_synth's; a dataset suite takes every sample
    world: WorldConfig = field(default_factory=WorldConfig)  # also sizes the tiny backbone's encoder inputs
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    # Text-only task (a name, or a list of names) the tiny backbone's stage-0 LLM is trained on. Typed
    # Any because OmegaConf has no str-or-list type; _cross_check validates it, text_tasks reads it.
    text_task: Any = None
    orders: dict[str, list[str]] = field(default_factory=dict)
    alignment: AlignmentConfig | None = None  # the LLaVA-1.5 alignment stage (null: runs start from the base)

    @property
    def text_tasks(self) -> list[str]:
        """The stage-0 text tasks as a list (none, one or several)."""
        if self.text_task is None:
            return []
        return [self.text_task] if isinstance(self.text_task, str) else list(self.text_task)

    @property
    def evaluated_tasks(self) -> list[str]:
        """The tasks every checkpoint is evaluated on: all but the alignment task (columns of the matrix)."""
        return [task for task in self.tasks if self.alignment is None or task != self.alignment.task]

    @property
    def generation_tasks(self) -> list[str]:
        """The image-generation tasks (family ``generation``): what a unified backbone learns to draw."""
        return [name for name, task in self.tasks.items() if task.family == "generation"]


@dataclass
class GridConfig:
    suite: str = MISSING
    orders: list[str] = MISSING
    methods: list[str] = MISSING
    backbones: list[str] = MISSING
    seeds: list[int] = field(default_factory=lambda: [0])


@dataclass
class TrainConfig:
    steps: int = 200  # optimizer steps per task of a stage
    task_steps: dict[str, int] = field(default_factory=dict)  # tasks that need another number of steps
    batch_size: int = 16  # global batch (split across processes under accelerate)
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    schedule: str = "cosine"  # constant | linear | cosine
    grad_clip: float = 1.0
    precision: str = "auto"  # auto (bf16 on CUDA when supported, else fp32) | fp32 | bf16 | fp16
    log_every: int = 25
    checkpoint_every: int = 50  # save a resumable training state every N steps (0: only on SIGTERM/SIGUSR1)
    num_workers: int = 0


@dataclass
class EvalConfig:
    batch_size: int = 64
    max_new_tokens: int = 24
    max_samples: int | None = None  # cap per task test split (None: the whole split)


@dataclass
class JudgeConfig:
    """The judge of generated images (``mmcl.models.judge``): a CNN trained once per suite with generation
    tasks, on their real training images, that reads colour, shape and position."""

    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    hidden: int = 32  # channels of its first convolution
    seed: int = 0


DISTRIBUTED = ("ddp", "fsdp", "deepspeed_zero2")  # workflow/accelerate/<name>.yaml


@dataclass
class JobResources:
    """What one kind of job asks the cluster for."""

    gpus: int = 0
    gpu_type: str | None = None  # GPU model as the cluster names it (e.g. a100); None: any
    cpus: int = 1  # also the job's thread count (OMP_NUM_THREADS), locally capped by --cores
    mem_mb: int = 4000
    runtime: int = 30  # wall-time minutes of the first attempt; attempt n gets n times as much


@dataclass
class ResourcesConfig:
    """Per-rule cluster resources. Not results-relevant: DVC and Snakemake do not re-run jobs for them."""

    partition: str | None = None  # Slurm partition (None: the cluster's default)
    account: str | None = None  # Slurm account (None: none)
    distributed: str = "ddp"  # how a stage uses more than one GPU: ddp | fsdp | deepspeed_zero2
    default: JobResources = field(default_factory=JobResources)  # prepare, reference, aggregate, report
    train_base: JobResources = field(default_factory=lambda: JobResources(gpus=1, cpus=2))
    train_stage: JobResources = field(default_factory=lambda: JobResources(gpus=1))
    evaluate: JobResources = field(default_factory=lambda: JobResources(gpus=1))


ARCHIVES = ("none", "zip", "tar")  # tar: any compression tarfile reads (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz)


@dataclass
class SourceFile:
    """One file of a dataset, saved as ``downloads/<dataset>/<its name>``: downloaded from ``url``, or
    found at ``path`` where the user put it (sources behind a login or a form; see ``manual``)."""

    url: str | None = None
    path: str | None = None
    sha256: str | None = None  # expected SHA-256; null: not verified (a warning prints the hash to pin)
    archive: str = "none"  # none | zip | tar: unpacked into downloads/<dataset>/extracted/<its name>/


@dataclass
class DatasetConfig:
    """Settings every dataset has; an adapter's own dataclass extends this (the files it looks for)."""

    adapter: str = MISSING  # converter of the source's layout in src/mmcl/data/sources/ (defaults to the name)
    licence: str = MISSING  # terms of use of the source, recorded in data/<dataset>/prepare.json
    manual: str | None = None  # how to obtain the files that have a `path:` instead of a `url:`
    files: dict[str, SourceFile] = field(default_factory=dict)  # file name -> where it comes from
    # Another dataset whose files this one converts instead of its own `files`: one download, converted
    # several ways (e.g. each task group of an instruction mixture).
    files_from: str | None = None


@dataclass
class Params:
    grid: GridConfig = field(default_factory=GridConfig)
    suites: dict[str, SuiteConfig] = field(default_factory=dict)
    datasets: dict[str, Any] = field(default_factory=dict)  # real datasets: name -> DatasetConfig (its adapter's)
    backbones: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)  # suites with generation tasks only
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    presets: dict[str, GridConfig] = field(default_factory=dict)  # named grids: one per paper table
    # A paper's configuration file names the params file it starts from (relative to itself); see load_params.
    extends: str | None = None
    path: str = "params.yaml"  # where these params were read from (set by load_params)
    preset: str | None = None  # the preset whose grid replaced `grid` (set by load_params)

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
        return digest({section: _fingerprinted(plain, section) for section in sections})


def _fingerprinted(plain: dict, section: str) -> Any:
    """The value a fingerprint hashes for ``section``: an entry without its unfingerprinted setting."""
    node = _lookup(plain, section)
    top, _, name = section.partition(".")
    if top in UNFINGERPRINTED and name in plain[top]:
        node = {key: value for key, value in node.items() if key != UNFINGERPRINTED[top]}
    return node


def _lookup(node: dict, dotted: str) -> Any:
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


# Settings left out of the fingerprint of their entry (`suites.<name>`, `backbones.<name>`): none of the
# jobs that fingerprint triggers reads them. The alignment stage has its own job and fingerprint
# (`suites.<name>.alignment`); `size` is a report label. So adding them re-ran no existing result.
UNFINGERPRINTED = {"suites": "alignment", "backbones": "size"}


def digest(obj: Any) -> str:
    """Short hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class MethodConfig:
    """Settings every method has; a method's own dataclass extends this."""

    type: str = MISSING  # registered method implementation (defaults to the entry's name)
    lr: float | None = None  # overrides train.lr for this method
    # Rehearsal, for any method: this fraction of each earlier task's training split is mixed into
    # every stage after the first (mmcl.data.replay). 0: none.
    replay_fraction: float = 0.0


@dataclass
class VideoConfig:
    frames: int = 4  # frames sampled per clip, each through the image encoder
    temporal: str = "concat"  # concat (keep every frame's tokens) | mean (average over frames)


MEASURES = ("nlu", "nlg")  # the linguistic measures (mmcl.metrics.linguistic), as task families name them


@dataclass
class LMEvalConfig:
    """lm-evaluation-harness tasks run on the LLM of every checkpoint (``mmcl lm-eval``), each scored by
    its ``acc``, grouped into the linguistic measures. Names are checked against the installed
    lm_eval when the job starts, not here: indexing its tasks takes seconds and this module stays light."""

    nlu: list[str] = field(default_factory=list)  # e.g. [wsc273, winogrande, arc_easy, arc_challenge]
    nlg: list[str] = field(default_factory=list)  # e.g. [lambada_standard]
    limit: int | None = None  # documents per task (None: all; a number only to try the pipeline)
    batch_size: int = 16
    include_path: str | None = None  # a directory of extra task YAMLs (e.g. tasks on local copies of the data)

    def tasks(self) -> dict[str, str]:
        """Task name -> its measure."""
        return {task: measure for measure in MEASURES for task in getattr(self, measure)}


@dataclass
class BackboneConfig:
    """Settings every backbone family has; a family's own dataclass extends this."""

    family: str = MISSING
    size: str | None = None  # parameter count label for reports (e.g. 160M)
    freeze_encoders: bool = True
    projector_hidden: int | None = None  # MLP width (None: the LLM's hidden size)
    video: VideoConfig = field(default_factory=VideoConfig)
    size: str | None = None  # parameter count label for reports (e.g. 160M)
    # Language ability of a pretrained LLM, measured with lm-evaluation-harness after every stage. It
    # belongs to the backbone, not the suite: it measures the LLM whatever data the stages train on, and
    # only a real LLM can do the harness's tasks (the tiny one knows only its benchmark's words).
    # None: the suite's own text tasks (text_nlu, text_nlg) are the measures.
    lm_eval: LMEvalConfig | None = None

    @property
    def generates_images(self) -> bool:
        """Whether its generated images can be decoded and judged (a suite's generation tasks need it)."""
        return False

    @property
    def stage0_draws(self) -> bool:
        """Whether its stage 0 trains on the suite's generation tasks (which the suite must then have)."""
        return False


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
    except ConfigError as err:  # a config dataclass's own check (__post_init__): say where it failed
        raise ConfigError(f"{path}: {where}: {err}") from None
    except OmegaConfBaseException as err:
        inner = str(err.full_key or "")
        key = ".".join(p for p in (where, inner) if p)
        if isinstance(err, ConfigKeyError):
            bad = inner.rsplit(".", 1)[-1]
            valid = _fields_at(schema, inner.rpartition(".")[0])
            hint = closest(bad, valid) or f"; valid keys: {', '.join(valid)}"
            raise ConfigError(f"{path}: {key}: unknown key '{bad}'{hint}") from None
        expected = _describe(_type_at(schema, inner))
        if isinstance(err, MissingMandatoryValue):
            raise ConfigError(f"{path}: {key}: required value is missing; set it to {expected}") from None
        if isinstance(err, ValidationError) and expected:
            raise ConfigError(f"{path}: {key}: expected {expected}, got {err.value!r}") from None
        raise ConfigError(f"{path}: {key}: {str(err).splitlines()[0]}") from None


def _settings_type(kind: Any) -> Any:
    """The dataclass of an optional settings section (``X | None`` -> ``X``); other types as they are."""
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        inner = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(inner) == 1 and hasattr(inner[0], "__dataclass_fields__"):
            return inner[0]
    return kind


def _type_at(schema: type, dotted: str) -> Any:
    """The declared type at ``dotted`` (a path inside ``schema``, e.g. ``grid.seeds[0]``); None if unknown."""
    node: Any = schema
    for part in re.findall(r"[^.\[\]]+", dotted):
        node = _settings_type(node)
        if typing.get_origin(node) in (dict, list):  # a user-chosen key or an index: step into the values
            node = typing.get_args(node)[-1]
        elif hasattr(node, "__dataclass_fields__"):
            node = typing.get_type_hints(node).get(part)
        else:
            return None
    return node


def _fields_at(schema: type, dotted: str) -> list[str]:
    """Field names of the dataclass that ``dotted`` (a path inside ``schema``) points into."""
    node = _settings_type(_type_at(schema, dotted))
    if typing.get_origin(node) in (dict, list):
        node = typing.get_args(node)[-1]
    return list(getattr(node, "__dataclass_fields__", []))


def _describe(kind: Any) -> str:
    """'an integer', 'a list', 'a number or null', ... for a declared type ('' when unknown)."""
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        return " or ".join(_describe(arg) for arg in typing.get_args(kind))
    if hasattr(kind, "__dataclass_fields__"):
        return "a mapping of settings"
    words = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    words |= {list: "a list, e.g. [a, b]", dict: "a mapping (key: value)"}
    return words.get(typing.get_origin(kind) or kind, "")


def _check_name(name: str, known, where: str, what: str, path: str) -> None:
    if name not in known:
        raise ConfigError(
            f"{path}: {where}: unknown {what} '{name}'{closest(name, known)}; defined: {', '.join(sorted(known))}"
        )


def _typed_entries(raw: dict, kind_key: str, registry, base: type, section: str, path: str) -> dict:
    """Validate each entry of a name -> settings mapping against its implementation's dataclass."""
    typed = {}
    for name, entry in (raw or {}).items():
        where = f"{section}.{name}"
        if not isinstance(entry, dict | None):
            raise ConfigError(f"{path}: {where}: expected a mapping of settings ({{}} for none), got {entry!r}")
        entry = dict(entry or {})
        entry.setdefault(kind_key, name)
        impl = registry.get(entry[kind_key], where=f"{path}: {where}.{kind_key}")
        config_class = getattr(impl, "config_class", base)
        typed[name] = _structured(config_class, entry, where, path)
    return typed


def _dataset_entries(raw: dict | None, sources, path: str) -> dict:
    """``_typed_entries`` for datasets, with each file validated on its own (file names contain dots,
    which would split the dotted key of an error inside them)."""
    typed = {}
    for name, entry in (raw or {}).items():
        files = {}
        if isinstance(entry, dict):
            entry = dict(entry)
            files = entry.pop("files", None) or {}
        if not isinstance(files, dict):
            raise ConfigError(
                f"{path}: datasets.{name}.files: expected a mapping (file name: {{url or path, sha256, archive}}), "
                f"got {files!r}"
            )
        typed[name] = _typed_entries({name: entry}, "adapter", sources, DatasetConfig, "datasets", path)[name]
        typed[name].files = {
            file: _structured(SourceFile, spec or {}, f"datasets.{name}.files.{file}", path)
            for file, spec in files.items()
        }
    return typed


def _check_grid(params: Params, grid: GridConfig, where: str, path: str, task_families) -> None:
    _check_name(grid.suite, params.suites, f"{where}.suite", "suite", path)
    suite = params.suites[grid.suite]
    for key, names, known, what in (
        ("orders", grid.orders, suite.orders, f"order of suite '{grid.suite}'"),
        ("methods", grid.methods, params.methods, "method"),
        ("backbones", grid.backbones, params.backbones, "backbone"),
    ):
        if not names:
            raise ConfigError(f"{path}: {where}.{key}: list at least one {what}")
        for i, name in enumerate(names):
            _check_name(name, known, f"{where}.{key}[{i}]", what, path)
            _check_once(names, i, f"{where}.{key}", path)
    drawing = [
        name for name, task in suite.tasks.items() if task_families.get(task.family).prediction == "generate_image"
    ]
    for i, name in enumerate(grid.backbones):
        backbone, key = params.backbones[name], f"{where}.backbones[{i}]"
        if drawing and not backbone.generates_images:
            raise ConfigError(
                f"{path}: {key}: backbone '{name}' cannot generate images to judge, but suite '{grid.suite}' has "
                f"generation tasks ({', '.join(drawing)}); use a `family: unified` backbone with `model: null`"
            )
        if backbone.stage0_draws and not drawing:
            raise ConfigError(
                f"{path}: {key}: backbone '{name}' learns to draw and read images at stage 0 from a generation task, "
                f"and suite '{grid.suite}' has none; add one (family: generation) or use a suite that has one"
            )
    from mmcl.methods import METHODS

    for i, name in enumerate(grid.methods):
        config = params.methods[name]
        if problem := METHODS.get(config.type)(config).suite_problem(suite):
            raise ConfigError(f"{path}: {where}.methods[{i}]: method '{name}' on suite '{grid.suite}': {problem}")
    if not grid.seeds:
        raise ConfigError(f"{path}: {where}.seeds: list at least one seed")
    for i in range(len(grid.seeds)):
        _check_once(grid.seeds, i, f"{where}.seeds", path)


def load_params(path: str | Path = "params.yaml", overrides: dict | None = None, preset: str | None = None) -> Params:
    """Read and validate ``params.yaml``; raise ConfigError with file, dotted key and suggestion.

    With ``preset``, the grid of ``presets.<preset>`` replaces ``grid`` (a paper table's grid).
    """
    from mmcl.data import GENERATORS, SOURCES, TASK_FAMILIES
    from mmcl.methods import METHODS
    from mmcl.models import BACKBONES

    path = Path(path)
    raw = _read_yaml(path, "run from the project root or pass --params PATH (snakemake: --config params=PATH)")
    where = str(path)
    if isinstance(raw, dict) and raw.get("extends") is not None:
        # A paper's configuration: the file it extends, with this file's sections merged over it (mappings
        # key by key, lists and values replaced). Errors name both files, as a key may come from either.
        base = path.parent / str(raw["extends"])
        fix = f"`extends` is a path relative to {path.parent}/; fix `extends` in {path}"
        base_raw = _read_yaml(base, fix)
        if not isinstance(base_raw, dict) or base_raw.get("extends") is not None:
            raise ConfigError(f"{path}: extends: {base} must be a params file that extends nothing")
        raw = OmegaConf.to_container(OmegaConf.merge(base_raw, raw), resolve=True)
        where = f"{path} (extending {base})"
    if overrides:
        raw = OmegaConf.to_container(OmegaConf.merge(raw, overrides), resolve=True)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of sections")

    fields = Params.__dataclass_fields__
    sections = [f for f in fields if f != "path"]
    for key, value in raw.items():
        if key not in sections:
            hint = closest(key, sections) or f"; sections: {', '.join(sections)}"
            raise ConfigError(f"{where}: {key}: unknown section{hint}")
        if key != "extends" and not isinstance(value, dict | None):
            raise ConfigError(f"{where}: {key}: expected a mapping of settings (key: value), got {value!r}")

    plain = {k: v for k, v in raw.items() if k not in ("backbones", "methods", "datasets")}
    params: Params = _structured(Params, plain, "", where)
    params.path = str(path)
    params.methods = _typed_entries(raw.get("methods"), "type", METHODS, MethodConfig, "methods", where)
    params.backbones = _typed_entries(raw.get("backbones"), "family", BACKBONES, BackboneConfig, "backbones", where)
    params.datasets = _dataset_entries(raw.get("datasets"), SOURCES, where)
    _cross_check(params, where, GENERATORS, TASK_FAMILIES)
    _check_datasets(params, where, GENERATORS, SOURCES, METHODS)
    _check_ranges(params, "", where)
    if preset is not None:
        _check_name(preset, params.presets, "presets", "preset", where)
        params.grid, params.preset = params.presets[preset], preset
    return params


def _read_yaml(path: Path, fix: str) -> Any:
    if not path.exists():
        raise ConfigError(f"{path}: no such file; {fix}")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or " ".join(str(err).split())
        raise ConfigError(f"{path}: {where}not valid YAML ({problem}); fix the syntax there") from None


def _check_once(items: list, i: int, key: str, path: str) -> None:
    """A name listed twice would run (or train) the same thing twice."""
    if items[i] in items[:i]:
        raise ConfigError(
            f"{path}: {key}[{i}]: '{items[i]}' is already listed at {key}[{items.index(items[i])}]; list it once"
        )


# Allowed range of every numeric setting with this name, wherever it appears (train, evaluation,
# suites.*.sizes, methods.*, backbones.*.stage0, ...): a run that cannot work fails at load, not mid-run.
POSITIVE = ("> 0", lambda v: v > 0)
NON_NEGATIVE = (">= 0", lambda v: v >= 0)
RANGES = {
    **dict.fromkeys(("steps", "batch_size", "lr", "log_every", "max_new_tokens", "max_samples", "limit"), POSITIVE),
    **dict.fromkeys(("train", "test"), POSITIVE),  # suites.*.sizes
    "test_images": POSITIVE,  # datasets.*: images held out as the test split of a source without one
    **dict.fromkeys(("pretrain", "weight_decay", "grad_clip", "checkpoint_every", "num_workers"), NON_NEGATIVE),
    "warmup_ratio": ("in [0, 1)", lambda v: 0 <= v < 1),
    "replay_fraction": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "soft_alpha": ("in [0, 1)", lambda v: 0 <= v < 1),
}


def _check_ranges(node: Any, key: str, path: str) -> None:
    if isinstance(node, dict):
        items = list(node.items())
    elif hasattr(node, "__dataclass_fields__"):
        items = [(name, getattr(node, name)) for name in node.__dataclass_fields__]
    else:
        return
    for name, value in items:
        where = f"{key}.{name}" if key else str(name)
        what, ok = RANGES.get(name, ("", None))
        if ok and isinstance(value, int | float) and not isinstance(value, bool) and not ok(value):
            default = getattr(getattr(node, "__dataclass_fields__", {}).get(name), "default", None)
            fix = f"e.g. {default} (the default)" if isinstance(default, int | float) else "or remove it"
            raise ConfigError(f"{path}: {where}: must be {what}, got {value}; set a value {what}, {fix}")
        _check_ranges(value, where, path)


def _check_text_tasks(suite: SuiteConfig, where: str, path: str) -> None:
    names = suite.text_task
    if isinstance(names, str):
        _check_name(names, suite.tasks, where, "task", path)
    elif names is not None:
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            raise ConfigError(
                f"{path}: {where}: expected a task name or a list of task names, e.g. [text_nlu, text_nlg], "
                f"got {names!r}"
            )
        for i, name in enumerate(names):
            _check_name(name, suite.tasks, f"{where}[{i}]", "task", path)
            _check_once(names, i, where, path)


def _check_alignment(suite: SuiteConfig, where: str, path: str) -> None:
    """The alignment task is a captioning task with a projector to train, outside every order."""
    name = suite.alignment.task
    _check_name(name, suite.tasks, where, "task", path)
    task = suite.tasks[name]
    captioning = [t for t, c in suite.tasks.items() if c.family == "captioning" and c.modality != "text"]
    if task.family != "captioning" or task.modality == "text":
        raise ConfigError(
            f"{path}: {where}: '{name}' is a {task.family} task ({task.modality}); the alignment stage trains a "
            f"projector on captions: name a captioning task of a media modality ({', '.join(captioning) or 'none'})"
        )
    for order, tasks in suite.orders.items():
        if name in tasks:
            raise ConfigError(
                f"{path}: {where}: '{name}' is also in order '{order}'; the alignment task is learned once before "
                "every order and never evaluated: remove it from the order, or align on another captioning task"
            )


def _cross_check(params: Params, path: str, generators, task_families) -> None:
    """Names that refer to other sections must exist there."""
    for suite_name, suite in params.suites.items():
        where = f"suites.{suite_name}"
        generators.get(suite.generator, where=f"{path}: {where}.generator")
        for task_name, task in suite.tasks.items():
            family = task_families.get(task.family, where=f"{path}: {where}.tasks.{task_name}.family")
            if task.modality not in MODALITIES:
                _check_name(task.modality, MODALITIES, f"{where}.tasks.{task_name}.modality", "modality", path)
            if task.metric is not None and not family.scorers:
                raise ConfigError(
                    f"{path}: {where}.tasks.{task_name}.metric: {task.family} tasks are scored one way "
                    f"({', '.join(family.metrics)}); remove `metric`"
                )
            if task.metric is not None and task.metric not in family.scorers:
                what = f"{task.family} metric"
                _check_name(task.metric, family.scorers, f"{where}.tasks.{task_name}.metric", what, path)
        for order_name, tasks in suite.orders.items():
            if not tasks:
                raise ConfigError(f"{path}: {where}.orders.{order_name}: an order needs at least one task")
            for i, task in enumerate(tasks):
                _check_name(task, suite.tasks, f"{where}.orders.{order_name}[{i}]", "task", path)
                _check_once(tasks, i, f"{where}.orders.{order_name}", path)
        _check_text_tasks(suite, f"{where}.text_task", path)
        if suite.alignment is not None:
            _check_alignment(suite, f"{where}.alignment.task", path)

    for name, backbone in params.backbones.items():
        if backbone.lm_eval is not None:
            _check_lm_eval(backbone.lm_eval, params.suites, f"backbones.{name}.lm_eval", path)

    for where, grid in (("grid", params.grid), *((f"presets.{name}", g) for name, g in params.presets.items())):
        _check_grid(params, grid, where, path, task_families)
    # Any suite's task: the step counts tuned for one suite stay valid while a grid runs another.
    every_task = {task for suite in params.suites.values() for task in suite.tasks}
    for task in params.train.task_steps:
        _check_name(task, every_task, f"train.task_steps.{task}", "task of any suite", path)
    if params.train.schedule not in ("constant", "linear", "cosine"):
        _check_name(params.train.schedule, ("constant", "linear", "cosine"), "train.schedule", "schedule", path)
    if params.train.precision not in ("auto", "fp32", "bf16", "fp16"):
        _check_name(params.train.precision, ("auto", "fp32", "bf16", "fp16"), "train.precision", "precision", path)
    resources = params.resources
    _check_name(resources.distributed, DISTRIBUTED, "resources.distributed", "strategy", path)
    for kind in ("default", "train_base", "train_stage", "evaluate"):
        job = getattr(resources, kind)
        for key, least in (("gpus", 0), ("cpus", 1), ("mem_mb", 1), ("runtime", 1)):
            if getattr(job, key) < least:
                raise ConfigError(f"{path}: resources.{kind}.{key}: must be at least {least}")


def _check_lm_eval(settings: LMEvalConfig, suites: dict, where: str, path: str) -> None:
    """Each lm-eval task is one column beside the suite's tasks: listed once, under a name no task has."""
    if not settings.tasks():
        raise ConfigError(f"{path}: {where}: list at least one task under nlu or nlg, e.g. nlg: [lambada_standard]")
    seen: dict[str, str] = {}
    for measure in MEASURES:
        for i, task in enumerate(getattr(settings, measure)):
            key = f"{where}.{measure}[{i}]"
            if task in seen:
                raise ConfigError(f"{path}: {key}: '{task}' is already listed at {seen[task]}; list it once")
            seen[task] = key
            for suite_name, suite in suites.items():
                if task in suite.tasks:
                    raise ConfigError(
                        f"{path}: {key}: '{task}' is also a task of suite '{suite_name}', and both would be "
                        "one column of its accuracy matrix; rename that task"
                    )


SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _check_files_from(params: Params, name: str, path: str) -> None:
    dataset, where = params.datasets[name], f"datasets.{name}"
    _check_name(dataset.files_from, params.datasets, f"{where}.files_from", "dataset", path)
    if dataset.files:
        raise ConfigError(f"{path}: {where}: give `files` or `files_from` (another dataset's files), not both")
    if dataset.files_from == name:
        raise ConfigError(f"{path}: {where}.files_from: names the dataset itself; list its files under `files`")
    if (owner := params.datasets[dataset.files_from].files_from) is not None:
        raise ConfigError(
            f"{path}: {where}.files_from: dataset '{dataset.files_from}' reads the files of '{owner}' itself; "
            f"set files_from: {owner}"
        )


def _check_datasets(params: Params, path: str, generators, sources, methods) -> None:
    """Every file of a dataset can be obtained and checked; every dataset task (and method) reads a dataset of
    its kind."""
    for name, dataset in params.datasets.items():
        where = f"datasets.{name}"
        if name in params.suites:
            raise ConfigError(f"{path}: {where}: suite '{name}' would also write data/{name}; rename one of them")
        if dataset.files_from is not None:
            _check_files_from(params, name, path)
            continue
        if not dataset.files:
            raise ConfigError(
                f"{path}: {where}.files: list the files the '{dataset.adapter}' adapter reads "
                "(or name the dataset whose files it reads with `files_from`)"
            )
        for file, source in dataset.files.items():
            key = f"{where}.files.{file}"
            if "/" in file or file in ("extracted", ".", ".."):
                raise ConfigError(
                    f"{path}: {key}: a file is named as it is saved, without '/' (and not 'extracted'), e.g. train.csv"
                )
            if (source.url is None) == (source.path is None):
                given = "both" if source.url else "neither"
                raise ConfigError(
                    f"{path}: {key}: give `url` (downloaded) or `path` (a file you put there by hand), not {given}"
                )
            if source.archive not in ARCHIVES:
                _check_name(source.archive, ARCHIVES, f"{key}.archive", "archive type", path)
            if source.sha256 is not None and not SHA256.fullmatch(source.sha256):
                raise ConfigError(
                    f"{path}: {key}.sha256: expected 64 hexadecimal digits, got {source.sha256!r} (null: not verified)"
                )
            if source.path is not None and not dataset.manual:
                raise ConfigError(
                    f"{path}: {where}.manual: {file} is placed by hand (`path:`); say how to obtain it, "
                    "e.g. which site and login"
                )
    for suite_name, suite in params.suites.items():
        reads_datasets = generators.get(suite.generator).reads_datasets
        for task_name, task in suite.tasks.items():
            key = f"suites.{suite_name}.tasks.{task_name}"
            if not reads_datasets:
                if task.dataset is not None:
                    raise ConfigError(
                        f"{path}: {key}.dataset: the '{suite.generator}' generator writes its own tasks; remove "
                        f"`dataset`, or set suites.{suite_name}.generator: datasets"
                    )
                continue
            if task.dataset is None:
                raise ConfigError(
                    f"{path}: {key}.dataset: every task of a `generator: datasets` suite reads a converted "
                    f"dataset; name one of: {', '.join(sorted(params.datasets)) or '(none under datasets:)'}"
                )
            _check_name(task.dataset, params.datasets, f"{key}.dataset", "dataset", path)
            adapter = sources.get(params.datasets[task.dataset].adapter)
            if "train" not in adapter.splits:
                raise ConfigError(
                    f"{path}: {key}.dataset: dataset '{task.dataset}' is an evaluation set (adapter {adapter.name} "
                    f"writes only {', '.join(adapter.splits)}), and a task trains on its dataset's train split"
                )
            if (task.family, task.modality) != (adapter.family, adapter.modality):
                raise ConfigError(
                    f"{path}: {key}: dataset '{task.dataset}' holds {adapter.modality} {adapter.family} "
                    f"(adapter {adapter.name}) but the task is {task.modality} {task.family}; "
                    f"set family: {adapter.family}, modality: {adapter.modality}"
                )
    for name, config in params.methods.items():  # datasets a method reads besides its suite's
        for dataset, (family, modality) in methods.get(config.type)(config).datasets().items():
            _check_name(dataset, params.datasets, f"methods.{name}", "dataset", path)
            adapter = sources.get(params.datasets[dataset].adapter)
            if "train" not in adapter.splits or (adapter.family, adapter.modality) != (family, modality):
                raise ConfigError(
                    f"{path}: methods.{name}: reads the train split of dataset '{dataset}', which holds "
                    f"{adapter.modality} {adapter.family} (adapter {adapter.name}: {', '.join(adapter.splits)}); "
                    f"name a dataset of {modality} {family} with a train split"
                )
