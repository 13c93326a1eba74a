"""``mmcl download``, ``mmcl extract``, ``mmcl convert``: real datasets (``datasets:`` in params.yaml), in the
three steps the workflow runs for each:

1. ``obtain`` a file: download it (resumed, retried, verified: ``mmcl.data.download``) to
   ``downloads/<dataset>/<file>``, or, for a source behind a login or a form (ImageNet-style), check the
   file the user put at its ``path`` and link it there;
2. ``unpack`` an archive into ``downloads/<dataset>/extracted/<file>/``;
3. ``convert`` those files with the dataset's adapter into ``data/<dataset>/`` (``sources.base``).

Each step writes its output atomically: a failure leaves nothing that looks complete.
"""

from __future__ import annotations

import time
from pathlib import Path

from mmcl.config.fingerprint import to_plain
from mmcl.config.schema import DatasetConfig, Params, SourceFile
from mmcl.core import paths
from mmcl.core.io import atomic_path, sha256_file, write_json
from mmcl.core.provenance import record
from mmcl.core.registry import ConfigError, closest
from mmcl.data import SOURCES
from mmcl.data.archives import extract
from mmcl.data.download import fetch
from mmcl.data.records import DataError
from mmcl.data.sources.base import DatasetWriter, Sources


def dataset_config(params: Params, name: str) -> DatasetConfig:
    if name not in params.datasets:
        known = ", ".join(sorted(params.datasets)) or "none"
        raise ConfigError(
            f"{params.path}: datasets: no dataset '{name}'{closest(name, params.datasets)}; defined: {known}"
        )
    return params.datasets[name]


def files_owner(params: Params, name: str) -> str:
    """The dataset whose downloads dataset ``name`` converts: itself, or the one its ``files_from`` names."""
    return dataset_config(params, name).files_from or name


def source_file(params: Params, name: str, file: str) -> SourceFile:
    if (owner := files_owner(params, name)) != name:
        raise ConfigError(
            f"{params.path}: datasets.{name}: reads the files of dataset '{owner}' (files_from); obtain them as "
            f"its files (--dataset {owner}, into downloads/{owner}/), or let `snakemake data/{name}/prepare.json` do it"
        )
    files = dataset_config(params, name).files
    if file not in files:
        raise ConfigError(
            f"{params.path}: datasets.{name}.files: no file '{file}'{closest(file, files)}; defined: {', '.join(files)}"
        )
    return files[file]


def source_paths(files: dict[str, SourceFile], downloads: Path) -> list[Path]:
    """What an adapter reads of these files, obtained into ``downloads``: each plain file, and the unpacked
    directory of each archive."""
    return [
        downloads / file if source.archive == "none" else downloads / paths.EXTRACTED / file
        for file, source in files.items()
    ]


def obtain(params: Params, name: str, file: str, out: Path, log=print) -> None:
    """Download the file (or check and link the one placed by hand) to ``out``."""
    source = source_file(params, name, file)
    if source.url is not None:
        fetch(source.url, out, source.sha256)
    else:
        _place(params, name, file, source, out)
    if source.sha256 is None:
        log(
            f"warning: {params.path}: datasets.{name}.files.{file}.sha256 is null, so {out} was not verified; "
            f"pin it with `sha256: {sha256_file(out)}` once you trust this copy"
        )


def _place(params: Params, name: str, file: str, source: SourceFile, out: Path) -> None:
    """A file that cannot be downloaded: check the user's copy, then link it where downloads go."""
    path, manual = Path(source.path), dataset_config(params, name).manual
    checked = f"checked against SHA-256 {source.sha256}" if source.sha256 else "used unverified (no sha256 pinned)"
    if not path.is_file():
        raise DataError(
            f"{params.path}: datasets.{name}.files.{file}: {path} does not exist, and this file is not downloaded: "
            f"{manual}. Put it at {path} (or set datasets.{name}.files.{file}.path); it will be {checked}"
        )
    if source.sha256 and (actual := sha256_file(path)) != source.sha256.lower():
        raise DataError(
            f"{path}: SHA-256 is {actual}, expected {source.sha256} (datasets.{name}.files.{file}); "
            f"replace it with the right file: {manual}"
        )
    with atomic_path(out) as tmp:
        tmp.symlink_to(path.resolve())


def unpack(params: Params, name: str, file: str, archive: Path, out: Path) -> None:
    """Extract the archive ``archive`` (the obtained ``file``) into the directory ``out``."""
    source = source_file(params, name, file)
    if source.archive == "none":
        raise ConfigError(f"{params.path}: datasets.{name}.files.{file}: not an archive (archive: none)")
    if source.url is not None:
        fix = f"delete {archive} and run again to download it again"
    else:
        fix = f"replace {source.path}: {dataset_config(params, name).manual}"
    if source.sha256 is None:
        fix += f"; pinning datasets.{name}.files.{file}.sha256 catches a damaged copy when it arrives"
    extract(archive, source.archive, out, fix)


def convert(params: Params, name: str, downloads: Path, out: Path, log=print) -> dict:
    """Convert the obtained (and unpacked) files of dataset ``name`` into ``out``; return its summary."""
    config = dataset_config(params, name)
    adapter = SOURCES.get(config.adapter)(config)
    files = dataset_config(params, files_owner(params, name)).files
    paths = source_paths(files, downloads)
    if missing := [path for path in paths if not path.exists()]:
        raise DataError(
            f"{missing[0]}: not there; obtain the dataset's files first: `snakemake data/{name}/prepare.json` "
            "(or `mmcl download` and `mmcl extract` for each file)"
        )
    fix = f"check that datasets.{name}.files are the files the '{config.adapter}' adapter reads (see its settings)"
    started = time.perf_counter()
    with atomic_path(out) as tmp:
        tmp.mkdir()
        writer = DatasetWriter(name, adapter.modality, tmp)
        try:
            adapter.convert(Sources(paths, fix), writer)
        except DataError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise DataError(
                f"datasets.{name}: the '{config.adapter}' adapter cannot read these files "
                f"({type(err).__name__}: {err}); {fix}"
            ) from None
        summary = {
            "dataset": name,
            "adapter": config.adapter,
            "family": adapter.family,
            "modality": adapter.modality,
            **writer.finish(adapter.splits),
            "licence": config.licence,
            "files": to_plain(files),
            **({"files_from": config.files_from} if config.files_from else {}),
            "seconds": round(time.perf_counter() - started, 2),
        }
        write_json(tmp / "prepare.json", summary)
        record(tmp / "provenance.json", params, {"command": "convert", "dataset": name})
    counts = ", ".join(f"{split} {entry['samples']}" for split, entry in summary["splits"].items())
    skipped = ", ".join(f"{n} {kind}" for kind, n in summary["skipped"].items()) or "none"
    log(f"converted {name} into {out}: {counts} samples; skipped: {skipped}; {summary['bytes'] / 1e6:,.1f} MB")
    return summary
