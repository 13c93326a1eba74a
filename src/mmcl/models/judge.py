"""The generation judge: a small CNN that reads an image's attributes, playing CLIP's role in scoring
generated images of the embedded world.

An attribute string is "<colour> <shape> <position>" (``draw``'s answers: "red circle top left"); the
judge has one classification head per field (colour, shape, and the position: the remaining words),
its classes are the values seen in training. ``mmcl train-judge`` trains it once on the real rendered
images of the suite's generation tasks (train split) and records its accuracy on their test split:
a generated image counts only if the judge reads all three fields as asked, and the judge's own
accuracy on real images says how far that score can be trusted.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from mmcl.data.records import DataError
from mmcl.models.image_models import Fit, as_float, fit, load_artifact, save_artifact, seeded

FIELDS = ("colour", "shape", "position")


def fields_of(attributes: str) -> tuple[str, str, str]:
    """ "red circle top left" -> ("red", "circle", "top left")."""
    words = attributes.split()
    if len(words) < 3:
        raise ValueError(f"{attributes!r}: expected '<colour> <shape> <position>'")
    return words[0], words[1], " ".join(words[2:])


class Judge(nn.Module):
    def __init__(self, classes: dict[str, list[str]], image_size: int, hidden: int = 32):
        super().__init__()
        self.classes = classes
        self.features = nn.Sequential(
            nn.Conv2d(3, hidden, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(hidden, 2 * hidden, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),  # keeps where things are: the position head needs it
            nn.Linear(2 * hidden * (image_size // 4) ** 2, 4 * hidden),
            nn.ReLU(),
        )
        self.heads = nn.ModuleDict({field: nn.Linear(4 * hidden, len(classes[field])) for field in FIELDS})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per field of images in [0, 1]."""
        features = self.features(images)
        return {field: head(features) for field, head in self.heads.items()}

    @torch.no_grad()
    def read(self, images: torch.Tensor) -> list[str]:
        """The attribute string of each image in [0, 1] (B, 3, H, W)."""
        picks = {field: logits.argmax(1).tolist() for field, logits in self(images).items()}
        return [" ".join(self.classes[field][picks[field][i]] for field in FIELDS) for i in range(len(images))]

    def targets(self, attributes: list[str]) -> dict[str, torch.Tensor]:
        fields = [fields_of(a) for a in attributes]
        return {f: torch.tensor([self.classes[f].index(v[i]) for v in fields]) for i, f in enumerate(FIELDS)}


def build(settings: dict) -> Judge:
    return Judge(settings["classes"], settings["image_size"], settings["hidden"])


def train_judge(
    images, attributes: list[str], test_images, test_attributes: list[str], config, out_dir: Path, log=print
):
    """Train the judge with ``config`` (``mmcl.config.JudgeConfig``) on uint8 ``images`` and their attribute
    strings, measure it on the test images and save it to ``out_dir``; returns its accuracy."""
    values = [fields_of(a) for a in attributes]
    classes = {field: sorted({v[i] for v in values}) for i, field in enumerate(FIELDS)}
    if unknown := sorted(
        {a for a in test_attributes if any(v not in classes[f] for f, v in zip(FIELDS, fields_of(a), strict=True))}
    ):
        raise DataError(f"test attributes never seen in training, e.g. {unknown[0]!r}; the judge cannot read them")
    settings = {**asdict(config), "classes": classes, "image_size": images.shape[-1]}
    judge = seeded(build, settings)
    pixels, targets = as_float(images), judge.targets(attributes)

    def loss_of(rows):
        logits = judge(pixels[rows])
        return sum(F.cross_entropy(logits[field], targets[field][rows]) for field in FIELDS)

    log(f"judge: {len(images)} images, classes {', '.join(f'{f} {len(c)}' for f, c in classes.items())}")
    stats = fit(judge, len(images), loss_of, Fit(config.steps, config.batch_size, config.lr, config.seed), log)
    stats |= accuracy(judge, test_images, test_attributes)
    log(f"judge: {stats}")
    save_artifact(out_dir, judge, {**settings, "stats": stats})
    return stats


@torch.no_grad()
def accuracy(judge: Judge, images: torch.Tensor, attributes: list[str]) -> dict:
    """Percent of images whose every field is read right, and of each field, on uint8 images."""
    read = [fields_of(a) for chunk in as_float(images).split(256) for a in judge.read(chunk)]
    gold = [fields_of(a) for a in attributes]
    per_field = {
        f"{field}_accuracy": round(100 * sum(r[i] == g[i] for r, g in zip(read, gold, strict=True)) / len(gold), 2)
        for i, field in enumerate(FIELDS)
    }
    return {
        "test_images": len(gold),
        "accuracy": round(100 * sum(r == g for r, g in zip(read, gold, strict=True)) / len(gold), 2),
        **per_field,
    }


def load_judge(directory: Path) -> tuple[Judge, dict]:
    return load_artifact(directory, build, "mmcl train-judge")
