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

from pathlib import Path

import torch
from torch import nn

from mmcl.models.image_artifacts import as_float, load_artifact

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
