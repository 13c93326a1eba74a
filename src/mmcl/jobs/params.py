"""``load_params``: what every job, the CLI and the Snakefile call to read ``params.yaml``.

It imports the plugins the file lists, reads and validates the file (``mmcl.config.load``) with each
entry's config class taken from its registry, then checks what only the implementations know: that
every generator, task family, scoring variant and dataset adapter exists, that each grid's backbones
can do what its suite asks (draw images), that each method can run on its grid's suite, and that the
datasets a task or method reads hold what it needs. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

from mmcl.config.errors import check_name
from mmcl.config.load import EntryTypes, grids, read_params, read_raw, select_preset
from mmcl.config.schema import BackboneConfig, DatasetConfig, GridConfig, MethodConfig, Params
from mmcl.core.registry import ConfigError, Registry, import_plugins
from mmcl.data import GENERATORS, SOURCES, TASK_FAMILIES
from mmcl.data.families import generation_tasks
from mmcl.methods import METHODS
from mmcl.models.backbones import BACKBONES


def load_params(path: str | Path = "params.yaml", overrides: dict | None = None, preset: str | None = None) -> Params:
    """Read and validate ``params.yaml``; raise ConfigError with file, dotted key and suggestion.

    With ``preset``, the grid of ``presets.<preset>`` replaces ``grid`` (a paper table's grid).
    """
    raw, where = read_raw(path, overrides)
    plugins = raw.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(plugin, str) for plugin in plugins):
        raise ConfigError(f"{where}: plugins: expected a list of paths (.py files or directories), got {plugins!r}")
    import_plugins([Path(plugin) for plugin in plugins], f"{where}: plugins")
    types = EntryTypes(
        method=config_class(METHODS, MethodConfig),
        backbone=config_class(BACKBONES, BackboneConfig),
        dataset=config_class(SOURCES, DatasetConfig),
    )
    params = read_params(raw, where, path, types)
    check_suites(params, where)
    for key, grid in grids(params):
        check_grid(params, grid, key, where)
    check_datasets(params, where)
    if preset is not None:
        select_preset(params, preset, where)
    return params


def config_class(registry: Registry, default: type):
    def find(name: str, where: str) -> type:
        return getattr(registry.get(name, where=where), "config_class", default)

    return find


def check_suites(params: Params, path: str) -> None:
    """Every suite's generator, and every task's family and scoring variant, is registered."""
    for suite_name, suite in params.suites.items():
        where = f"suites.{suite_name}"
        GENERATORS.get(suite.generator, where=f"{path}: {where}.generator")
        for task_name, task in suite.tasks.items():
            family = TASK_FAMILIES.get(task.family, where=f"{path}: {where}.tasks.{task_name}.family")
            if task.metric is not None and not family.scorers:
                raise ConfigError(
                    f"{path}: {where}.tasks.{task_name}.metric: {task.family} tasks are scored one way "
                    f"({', '.join(family.metrics)}); remove `metric`"
                )
            if task.metric is not None and task.metric not in family.scorers:
                what = f"{task.family} metric"
                check_name(task.metric, family.scorers, f"{where}.tasks.{task_name}.metric", what, path)


def check_grid(params: Params, grid: GridConfig, where: str, path: str) -> None:
    """The grid's backbones draw where its suite asks for images, and its methods run on its suite."""
    suite = params.suites[grid.suite]
    drawing = generation_tasks(suite)
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
    for i, name in enumerate(grid.methods):
        config = params.methods[name]
        if problem := METHODS.get(config.type)(config).suite_problem(suite):
            raise ConfigError(f"{path}: {where}.methods[{i}]: method '{name}' on suite '{grid.suite}': {problem}")


def check_datasets(params: Params, path: str) -> None:
    """Every dataset task (and method) reads a dataset of its kind."""
    for suite_name, suite in params.suites.items():
        reads_datasets = GENERATORS.get(suite.generator).reads_datasets
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
            check_name(task.dataset, params.datasets, f"{key}.dataset", "dataset", path)
            adapter = SOURCES.get(params.datasets[task.dataset].adapter)
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
        for dataset, (family, modality) in METHODS.get(config.type)(config).datasets().items():
            check_name(dataset, params.datasets, f"methods.{name}", "dataset", path)
            adapter = SOURCES.get(params.datasets[dataset].adapter)
            if "train" not in adapter.splits or (adapter.family, adapter.modality) != (family, modality):
                raise ConfigError(
                    f"{path}: methods.{name}: reads the train split of dataset '{dataset}', which holds "
                    f"{adapter.modality} {adapter.family} (adapter {adapter.name}: {', '.join(adapter.splits)}); "
                    f"name a dataset of {modality} {family} with a train split"
                )
