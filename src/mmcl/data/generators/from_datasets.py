"""``generator: datasets``: a suite of real datasets, each task reading its converted dataset.

Each task's ``<task>/train.jsonl`` and ``<task>/test.jsonl`` are its dataset's splits
(``data/<dataset>/``, see ``mmcl.data.sources.base``), with the task's name and media paths that lead
there from the suite's directory (``../<dataset>/media/...``): the media are not copied again.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from mmcl.config.schema import SuiteConfig
from mmcl.core.io import sha256_file, write_text
from mmcl.core.registry import ConfigError
from mmcl.data import GENERATORS
from mmcl.data.records import DataError, Sample, read_jsonl, split_path, write_jsonl
from mmcl.data.vocab import words_of

SPLITS = ("train", "test")


@GENERATORS.register("datasets")
class FromDatasets:
    reads_datasets = True  # each task names its dataset (checked at load); `generate` is told where they are

    def __init__(self, suite: SuiteConfig):
        self.suite = suite

    def generate(self, out_dir: Path, data_root: Path) -> dict:
        """Write every task of the suite into ``out_dir``, from the datasets under ``data_root``."""
        started = time.perf_counter()
        words: set[str] = set()
        tasks, datasets = {}, {}
        for task, config in self.suite.tasks.items():
            dataset_dir = Path(data_root) / config.dataset
            summary = dataset_dir / "prepare.json"
            if not summary.exists():
                raise DataError(
                    f"{summary}: dataset '{config.dataset}' of task '{task}' is not converted; "
                    f"run `snakemake {summary}` (download, unpack, convert)"
                )
            datasets[config.dataset] = sha256_file(summary)
            splits = {}
            for split in SPLITS:
                samples = [replace(sample, task=task) for sample in dataset_split(data_root, config.dataset, split)]
                write_jsonl(split_path(out_dir, task, split), samples)
                words |= {word for sample in samples for word in words_of(sample)}
                splits[split] = {"samples": len(samples)}
            tasks[task] = {"dataset": config.dataset, "family": config.family, "modality": config.modality}
            tasks[task]["splits"] = splits
        write_text(Path(out_dir) / "vocab.txt", "".join(f"{word}\n" for word in sorted(words)))
        return {"tasks": tasks, "datasets": datasets, "seconds": round(time.perf_counter() - started, 3)}

    def pseudo_qa(self, sample: Sample) -> tuple[str, str]:
        raise ConfigError(
            f"moincl's PTGM derives pseudo question-answer pairs from captions only on micl_synth (task "
            f"'{sample.task}' reads a real dataset); set ptgm.enabled: false for this suite"
        )


def dataset_split(data_root: Path, dataset: str, split: str) -> list[Sample]:
    """A converted dataset's split, its media paths relative to a suite's directory: a suite's directory is
    a sibling of the dataset's (data/<suite>, data/<dataset>), so they lead through ``../<dataset>/``."""
    dataset_dir = Path(data_root) / dataset
    samples = read_jsonl(dataset_dir / f"{split}.jsonl", dataset_dir)
    return [replace(sample, media=[f"../{dataset}/{m}" for m in sample.media]) for sample in samples]
