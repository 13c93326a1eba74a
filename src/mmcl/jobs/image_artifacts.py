"""The jobs that build a suite's image artifacts before any model uses them: the embedded unified
backbone's image tokenizer (``mmcl train-tokenizer``) and the judge of generated images
(``mmcl train-judge``). Each is trained once, seeded, and saved as a sealed directory with its
measurements; where the workflow keeps them: ``mmcl.core.paths.image_tokenizer_dir`` and ``judge_dir``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch.nn import functional as F

from mmcl.config.schema import Params
from mmcl.core.provenance import record
from mmcl.core.registry import ConfigError
from mmcl.data.families import generation_tasks
from mmcl.data.records import DataError, load_split
from mmcl.engine.small_loop import SmallFit, fit_small
from mmcl.models import judge, vq
from mmcl.models.backbones import BACKBONES
from mmcl.models.backbones.unified import IMAGE_TOKENIZER
from mmcl.models.image_artifacts import as_float, read_images, save_artifact, seeded

HELD_OUT = 500  # test images a tokenizer's reconstruction is measured on (the first ones)


def image_tasks(params: Params, suite: str) -> list[str]:
    return [name for name, task in params.suites[suite].tasks.items() if task.modality == "image"]


def build_image_tokenizer(params: Params, suite: str, backbone: str, data_dir: Path, out_dir: Path, log=print) -> dict:
    """The VQ-VAE of an embedded unified backbone, trained on every training image of the suite's image tasks."""
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
    tasks = generation_tasks(params.suites[suite])
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


def train_tokenizer(images: torch.Tensor, held_out: torch.Tensor, config, out_dir: Path, log=print) -> dict:
    """Train a VQ-VAE with ``config`` (``mmcl.models.backbones.unified.ImageTokenizerConfig``) on uint8
    ``images``, measure it on ``held_out`` and save it to ``out_dir``; returns its stats."""
    settings = asdict(config)
    model = seeded(vq.build, settings)
    pixels = as_float(images)

    def loss_of(rows):
        return model.loss(pixels[rows], config.commitment)

    tokens = model.tokens_per_image(images.shape[-1])
    log(f"image tokenizer: {len(images)} images, {config.codebook_size} codes, {tokens} per image")
    stats = fit_small(model, len(images), loss_of, small_fit(config), torch.Generator().manual_seed(config.seed), log)
    stats |= vq.measure(model, held_out)
    log(f"image tokenizer: {stats}")
    save_artifact(out_dir, model, {**settings, "image_size": images.shape[-1], "stats": stats})
    return stats


def train_judge(images, attributes: list[str], test_images, test_attributes: list[str], config, out_dir, log=print):
    """Train the judge with ``config`` (``mmcl.config.schema.JudgeConfig``) on uint8 ``images`` and their
    attribute strings, measure it on the test images and save it to ``out_dir``; returns its accuracy."""
    values = [judge.fields_of(a) for a in attributes]
    classes = {field: sorted({v[i] for v in values}) for i, field in enumerate(judge.FIELDS)}
    unseen = {
        a
        for a in test_attributes
        if any(v not in classes[f] for f, v in zip(judge.FIELDS, judge.fields_of(a), strict=True))
    }
    if unseen:
        raise DataError(
            f"test attributes never seen in training, e.g. {sorted(unseen)[0]!r}; the judge cannot read them"
        )
    settings = {**asdict(config), "classes": classes, "image_size": images.shape[-1]}
    model = seeded(judge.build, settings)
    pixels, targets = as_float(images), model.targets(attributes)

    def loss_of(rows):
        logits = model(pixels[rows])
        return sum(F.cross_entropy(logits[field], targets[field][rows]) for field in judge.FIELDS)

    log(f"judge: {len(images)} images, classes {', '.join(f'{f} {len(c)}' for f, c in classes.items())}")
    stats = fit_small(model, len(images), loss_of, small_fit(config), torch.Generator().manual_seed(config.seed), log)
    stats |= judge.accuracy(model, test_images, test_attributes)
    log(f"judge: {stats}")
    save_artifact(out_dir, model, {**settings, "stats": stats})
    return stats


def small_fit(config) -> SmallFit:
    """An artifact's training settings, from its config's steps, batch_size and lr."""
    return SmallFit(config.steps, config.batch_size, config.lr)
