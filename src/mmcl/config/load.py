"""Reading ``params.yaml`` into the typed ``Params``, with the checks that need no registry.

``read_params`` merges the YAML (and a paper configuration's ``extends``) into OmegaConf structured
configs, validates each method, backbone and dataset entry against the config class of the
implementation it names (found by the ``EntryTypes`` it is given), checks every numeric range and
every name that refers to another section. The checks that ask an implementation (a task family's
scorers, a method's suite requirements, ...) are ``mmcl.jobs.params``'s, which calls this.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from mmcl.config.errors import check_name, check_once, structured
from mmcl.config.ranges import check_ranges
from mmcl.config.schema import (
    ARCHIVES,
    CELLS,
    DISTRIBUTED,
    MEASURES,
    MODALITIES,
    DatasetConfig,
    GridConfig,
    LMEvalConfig,
    Params,
    SourceFile,
    SuiteConfig,
)
from mmcl.core.paths import EXTRACTED
from mmcl.core.registry import ConfigError, closest

# The config class of an implementation, by its name: (name, where to say it failed) -> dataclass.
ConfigClass = Callable[[str, str], type]
SCHEDULES = ("constant", "linear", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ATTENTIONS = ("sdpa", "eager", "flash_attention_2")
RESOURCE_KINDS = ("default", "train_base", "train_stage", "evaluate")
SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class EntryTypes:
    """How to find the config class of a ``methods:``, ``backbones:`` and ``datasets:`` entry."""

    method: ConfigClass  # by `type`
    backbone: ConfigClass  # by `family`
    dataset: ConfigClass  # by `adapter`


def read_yaml(path: Path, fix: str) -> Any:
    if not path.exists():
        raise ConfigError(f"{path}: no such file; {fix}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or " ".join(str(err).split())
        raise ConfigError(f"{path}: {where}not valid YAML ({problem}); fix the syntax there") from None
    if isinstance(raw, dict) and isinstance(raw.get("plugins"), list):  # relative to the file that lists them
        raw["plugins"] = [str(path.parent / str(plugin)) for plugin in raw["plugins"]]
    return raw


def read_raw(path: str | Path, overrides: dict | None = None) -> tuple[dict, str]:
    """The YAML of ``path`` (merged over the file it ``extends``, then ``overrides`` over both) and how
    errors name where it came from."""
    path = Path(path)
    raw = read_yaml(path, "run from the project root or pass --params PATH (snakemake: --config params=PATH)")
    where = str(path)
    if isinstance(raw, dict) and raw.get("extends") is not None:
        # A paper's configuration: the file it extends, with this file's sections merged over it (mappings
        # key by key, lists and values replaced). Errors name both files, as a key may come from either.
        base = path.parent / str(raw["extends"])
        fix = f"`extends` is a path relative to {path.parent}/; fix `extends` in {path}"
        base_raw = read_yaml(base, fix)
        if not isinstance(base_raw, dict) or base_raw.get("extends") is not None:
            raise ConfigError(f"{path}: extends: {base} must be a params file that extends nothing")
        raw = OmegaConf.to_container(OmegaConf.merge(base_raw, raw), resolve=True)
        where = f"{path} (extending {base})"
    if overrides:
        raw = OmegaConf.to_container(OmegaConf.merge(raw, overrides), resolve=True)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of sections")
    return raw, where


def read_params(raw: dict, where: str, path: str | Path, types: EntryTypes) -> Params:
    """Validate ``raw`` (from ``read_raw``) into ``Params``; raise ConfigError with file, dotted key and
    suggestion."""
    sections = [f for f in Params.__dataclass_fields__ if f != "path"]
    for key, value in raw.items():
        if key not in sections:
            hint = closest(key, sections) or f"; sections: {', '.join(sections)}"
            raise ConfigError(f"{where}: {key}: unknown section{hint}")
        if key not in ("extends", "plugins") and not isinstance(value, dict | None):
            raise ConfigError(f"{where}: {key}: expected a mapping of settings (key: value), got {value!r}")

    plain = {k: v for k, v in raw.items() if k not in ("backbones", "methods", "datasets")}
    params: Params = structured(Params, plain, "", where)
    params.path = str(path)
    params.methods = typed_entries(raw.get("methods"), "type", types.method, "methods", where)
    params.backbones = typed_entries(raw.get("backbones"), "family", types.backbone, "backbones", where)
    params.datasets = dataset_entries(raw.get("datasets"), types.dataset, where)
    check_suites(params, where)
    check_datasets(params, where)
    check_training(params, where)
    check_ranges(params, "", where)
    return params


def select_preset(params: Params, preset: str, where: str) -> None:
    """The grid of ``presets.<preset>`` (a paper table's) replaces ``grid``."""
    check_name(preset, params.presets, "presets", "preset", where)
    params.grid, params.preset = params.presets[preset], preset


def typed_entries(raw: dict | None, kind_key: str, config_class: ConfigClass, section: str, path: str) -> dict:
    """Validate each entry of a name -> settings mapping against its implementation's dataclass."""
    typed = {}
    for name, entry in (raw or {}).items():
        where = f"{section}.{name}"
        if not isinstance(entry, dict | None):
            raise ConfigError(f"{path}: {where}: expected a mapping of settings ({{}} for none), got {entry!r}")
        entry = dict(entry or {})
        entry.setdefault(kind_key, name)
        schema = config_class(entry[kind_key], f"{path}: {where}.{kind_key}")
        typed[name] = structured(schema, entry, where, path)
    return typed


def dataset_entries(raw: dict | None, config_class: ConfigClass, path: str) -> dict:
    """``typed_entries`` for datasets, with each file validated on its own (file names contain dots,
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
        typed[name] = typed_entries({name: entry}, "adapter", config_class, "datasets", path)[name]
        typed[name].files = {
            file: structured(SourceFile, spec or {}, f"datasets.{name}.files.{file}", path)
            for file, spec in files.items()
        }
    return typed


def check_text_tasks(suite: SuiteConfig, where: str, path: str) -> None:
    names = suite.text_task
    if isinstance(names, str):
        check_name(names, suite.tasks, where, "task", path)
    elif names is not None:
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            raise ConfigError(
                f"{path}: {where}: expected a task name or a list of task names, e.g. [text_nlu, text_nlg], "
                f"got {names!r}"
            )
        for i, name in enumerate(names):
            check_name(name, suite.tasks, f"{where}[{i}]", "task", path)
            check_once(names, i, where, path)


def check_alignment(suite: SuiteConfig, where: str, path: str) -> None:
    """The alignment task is a captioning task with a projector to train, outside every order."""
    name = suite.alignment.task
    check_name(name, suite.tasks, where, "task", path)
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


def check_suites(params: Params, path: str) -> None:
    """Every suite's tasks, orders, text tasks and alignment name what the suite defines; the grids name
    what the params define."""
    for suite_name, suite in params.suites.items():
        where = f"suites.{suite_name}"
        for task_name, task in suite.tasks.items():
            if task.modality not in MODALITIES:
                check_name(task.modality, MODALITIES, f"{where}.tasks.{task_name}.modality", "modality", path)
        for order_name, tasks in suite.orders.items():
            if not tasks:
                raise ConfigError(f"{path}: {where}.orders.{order_name}: an order needs at least one task")
            for i, task in enumerate(tasks):
                check_name(task, suite.tasks, f"{where}.orders.{order_name}[{i}]", "task", path)
                check_once(tasks, i, f"{where}.orders.{order_name}", path)
        check_text_tasks(suite, f"{where}.text_task", path)
        if suite.alignment is not None:
            check_alignment(suite, f"{where}.alignment.task", path)
    for name, backbone in params.backbones.items():
        if backbone.lm_eval is not None:
            check_lm_eval(backbone.lm_eval, params.suites, f"backbones.{name}.lm_eval", path)
        if backbone.attn_implementation not in ATTENTIONS:
            where = f"backbones.{name}.attn_implementation"
            check_name(backbone.attn_implementation, ATTENTIONS, where, "attention", path)
    for where, grid in grids(params):
        check_grid(params, grid, where, path)


def grids(params: Params) -> list[tuple[str, GridConfig]]:
    """The grid and every preset, each with its key."""
    return [("grid", params.grid), *((f"presets.{name}", grid) for name, grid in params.presets.items())]


def check_grid(params: Params, grid: GridConfig, where: str, path: str) -> None:
    check_name(grid.suite, params.suites, f"{where}.suite", "suite", path)
    suite = params.suites[grid.suite]
    for key, names, known, what in (
        ("orders", grid.orders, suite.orders, f"order of suite '{grid.suite}'"),
        ("methods", grid.methods, params.methods, "method"),
        ("backbones", grid.backbones, params.backbones, "backbone"),
    ):
        if not names:
            raise ConfigError(f"{path}: {where}.{key}: list at least one {what}")
        for i, name in enumerate(names):
            check_name(name, known, f"{where}.{key}[{i}]", what, path)
            check_once(names, i, f"{where}.{key}", path)
    if grid.baseline is not None:
        check_name(grid.baseline, grid.methods, f"{where}.baseline", f"method of {where}.methods", path)
    if not grid.seeds:
        raise ConfigError(f"{path}: {where}.seeds: list at least one seed")
    for i in range(len(grid.seeds)):
        check_once(grid.seeds, i, f"{where}.seeds", path)


def check_training(params: Params, path: str) -> None:
    # Any suite's task: the step counts tuned for one suite stay valid while a grid runs another.
    every_task = {task for suite in params.suites.values() for task in suite.tasks}
    for task in params.train.task_steps:
        check_name(task, every_task, f"train.task_steps.{task}", "task of any suite", path)
    if params.train.schedule not in SCHEDULES:
        check_name(params.train.schedule, SCHEDULES, "train.schedule", "schedule", path)
    if params.train.precision not in PRECISIONS:
        check_name(params.train.precision, PRECISIONS, "train.precision", "precision", path)
    check_name(params.evaluation.cells, CELLS, "evaluation.cells", "choice", path)
    resources = params.resources
    check_name(resources.distributed, DISTRIBUTED, "resources.distributed", "strategy", path)
    for kind in RESOURCE_KINDS:
        job = getattr(resources, kind)
        for key, least in (("gpus", 0), ("cpus", 1), ("mem_mb", 1), ("runtime", 1)):
            if getattr(job, key) < least:
                raise ConfigError(f"{path}: resources.{kind}.{key}: must be at least {least}")


def check_lm_eval(settings: LMEvalConfig, suites: dict, where: str, path: str) -> None:
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


def check_files_from(params: Params, name: str, path: str) -> None:
    dataset, where = params.datasets[name], f"datasets.{name}"
    check_name(dataset.files_from, params.datasets, f"{where}.files_from", "dataset", path)
    if dataset.files:
        raise ConfigError(f"{path}: {where}: give `files` or `files_from` (another dataset's files), not both")
    if dataset.files_from == name:
        raise ConfigError(f"{path}: {where}.files_from: names the dataset itself; list its files under `files`")
    if (owner := params.datasets[dataset.files_from].files_from) is not None:
        raise ConfigError(
            f"{path}: {where}.files_from: dataset '{dataset.files_from}' reads the files of '{owner}' itself; "
            f"set files_from: {owner}"
        )


def check_datasets(params: Params, path: str) -> None:
    """Every file of a dataset can be obtained and checked."""
    for name, dataset in params.datasets.items():
        where = f"datasets.{name}"
        if name in params.suites:
            raise ConfigError(f"{path}: {where}: suite '{name}' would also write data/{name}; rename one of them")
        if dataset.files_from is not None:
            check_files_from(params, name, path)
            continue
        if not dataset.files:
            raise ConfigError(
                f"{path}: {where}.files: list the files the '{dataset.adapter}' adapter reads "
                "(or name the dataset whose files it reads with `files_from`)"
            )
        for file, source in dataset.files.items():
            check_source_file(file, source, dataset, where, path)


def check_source_file(file: str, source: SourceFile, dataset: DatasetConfig, where: str, path: str) -> None:
    key = f"{where}.files.{file}"
    if "/" in file or file in (EXTRACTED, ".", ".."):
        raise ConfigError(
            f"{path}: {key}: a file is named as it is saved, without '/' (and not '{EXTRACTED}'), e.g. train.csv"
        )
    if (source.url is None) == (source.path is None):
        given = "both" if source.url else "neither"
        raise ConfigError(
            f"{path}: {key}: give `url` (downloaded) or `path` (a file you put there by hand), not {given}"
        )
    if source.archive not in ARCHIVES:
        check_name(source.archive, ARCHIVES, f"{key}.archive", "archive type", path)
    if source.sha256 is not None and not SHA256.fullmatch(source.sha256):
        raise ConfigError(
            f"{path}: {key}.sha256: expected 64 hexadecimal digits, got {source.sha256!r} (null: not verified)"
        )
    if source.path is not None and not dataset.manual:
        raise ConfigError(
            f"{path}: {where}.manual: {file} is placed by hand (`path:`); say how to obtain it, "
            "e.g. which site and login"
        )
