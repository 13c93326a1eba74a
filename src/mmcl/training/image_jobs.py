"""The jobs that build a suite's image artifacts before any model uses them: the embedded unified
backbone's image tokenizer (``mmcl train-tokenizer``) and the judge of generated images
(``mmcl train-judge``). Each is trained once, seeded, and saved as a sealed directory with its
measurements; where the workflow keeps them: ``mmcl.plan.image_tokenizer_dir`` and ``judge_dir``.
"""

from __future__ import annotations

from pathlib import Path

from mmcl.config import Params
from mmcl.data.records import DataError
from mmcl.models import BACKBONES
from mmcl.models.image_models import read_images
from mmcl.models.unified import IMAGE_TOKENIZER
from mmcl.provenance import record
from mmcl.registry import ConfigError
from mmcl.training.jobs import load_split

HELD_OUT = 500  # test images a tokenizer's reconstruction is measured on (the first ones)


def image_tasks(params: Params, suite: str, family: str | None = None) -> list[str]:
    tasks = params.suites[suite].tasks.items()
    return [name for name, task in tasks if task.modality == "image" and family in (None, task.family)]


def build_image_tokenizer(params: Params, suite: str, backbone: str, data_dir: Path, out_dir: Path, log=print) -> dict:
    """The VQ-VAE of an embedded unified backbone, trained on every training image of the suite's image tasks."""
    from mmcl.models.vq import train_tokenizer

    config = params.backbones[backbone]
    if IMAGE_TOKENIZER not in BACKBONES.get(config.family)(config).required_artifacts():
        raise ConfigError(
            f"backbone '{backbone}' has no image tokenizer to train (only `family: unified`, `model: null`)"
        )
    tasks = image_tasks(params, suite)
    if not tasks:
        raise DataError(f"suite '{suite}' has no image tasks to train an image tokenizer on")
    images = read_images(data_dir, load_split(data_dir, tasks, "train"))
    held_out = read_images(data_dir, load_split(data_dir, tasks, "test")[:HELD_OUT])
    stats = train_tokenizer(images, held_out, config.tokenizer, out_dir, log)
    record(out_dir / "provenance.json", params, {"command": "train-tokenizer", "suite": suite, "backbone": backbone})
    return stats


def build_judge(params: Params, suite: str, data_dir: Path, out_dir: Path, log=print) -> dict:
    """The judge of a suite's generation tasks, trained on their training images, measured on their test images."""
    from mmcl.models.judge import train_judge

    tasks = image_tasks(params, suite, "generation")
    if not tasks:
        raise DataError(f"suite '{suite}' has no image generation tasks (family: generation) to train a judge for")
    train, test = load_split(data_dir, tasks, "train"), load_split(data_dir, tasks, "test")
    stats = train_judge(
        read_images(data_dir, train),
        [sample.answers[0] for sample in train],
        read_images(data_dir, test),
        [sample.answers[0] for sample in test],
        params.judge,
        out_dir,
        log,
    )
    record(out_dir / "provenance.json", params, {"command": "train-judge", "suite": suite})
    return stats
