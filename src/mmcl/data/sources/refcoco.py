"""Referring expressions in the refer toolkit's format (RefCOCO; also RefCOCO+ and RefCOCOg), answered
with the referred object's box. ``refcoco.zip`` holds::

    refs(unc).p     a pickled list of refs: {"ref_id": 0, "ann_id": 1719310, "image_id": 581857,
                    "split": "train", "sentences": [{"sent_id": 0, "sent": "the lady with the blue shirt"}, ...]}
    instances.json  COCO style: "images" [{"id", "file_name", "width", "height"}], "annotations" [{"id", "bbox"}]

One sample per expression: the instruction is ``prompt`` with the expression, the answer the box as
text, "[x1, y1, x2, y2]", its corners divided by the image's width and height, with 2 decimals.

Why a box as text: the embedded ``ref`` task answers a referring expression with a location written as
text (a grid cell, as a short answer). A real image has no grid, so the location is the box, written and
asked for as LLaVA-1.5 does in its instruction mixture (the ``ref`` group of ``llava_mix`` holds
RefCOCO's training expressions in this form), so that a model trained on that group answers in the form
scored here. Corners are relative to the original image, as the study's evaluation (TRI's
vlm-evaluation) computes them. Score it with ``metric: box``: right when the predicted box overlaps the
object's with IoU >= 0.5, RefCOCO's accuracy.

The pickle is read allowing plain Python values only, so a damaged or substituted file cannot run code.
``splits`` maps the source's splits (RefCOCO's unc split: train, val, testA, testB) to ours; COCO's
train2014 images are found by file name.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

from mmcl.config.schema import DatasetConfig
from mmcl.core.registry import ConfigError
from mmcl.data import SOURCES
from mmcl.data.records import DataError
from mmcl.data.sources.base import IMAGE_SUFFIXES, SPLITS, Adapter, DatasetWriter, Sources, read_json

REGION_PROMPT = "Please provide the bounding box coordinate of the region this sentence describes: {expression}"


@dataclass
class RefSplits:
    """The source's splits that make each of ours ([]: we have none)."""

    train: list[str] = field(default_factory=lambda: ["train"])
    val: list[str] = field(default_factory=lambda: ["val"])
    test: list[str] = field(default_factory=lambda: ["testA", "testB"])


@dataclass
class RefCOCOConfig(DatasetConfig):
    adapter: str = "refcoco"
    refs: str = "refs(unc).p"  # refs(google).p: RefCOCO's other split; RefCOCOg's umd split: refs(umd).p
    instances: str = "instances.json"
    splits: RefSplits = field(default_factory=RefSplits)
    prompt: str = REGION_PROMPT  # {expression}: the referring expression

    def __post_init__(self):
        if "{expression}" not in self.prompt:
            raise ConfigError(f"prompt {self.prompt!r} has no {{expression}}, where the referring expression goes")


class _PlainValues(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"it holds a {module}.{name} object, where a refs file has plain values only")


def load_refs(path: Path) -> list[dict]:
    with open(path, "rb") as f:
        try:
            return _PlainValues(f, encoding="utf-8").load()  # written by Python 2: its byte strings are UTF-8
        except (pickle.UnpicklingError, EOFError) as err:
            raise DataError(f"{path}: not a refer toolkit refs file ({err}); download it again") from None


def box_text(bbox: list[float], width: float, height: float) -> str:
    """COCO's [x, y, w, h] in pixels as "[x1, y1, x2, y2]", relative to the image's size."""
    x, y, w, h = bbox
    corners = (x / width, y / height, (x + w) / width, (y + h) / height)
    return "[" + ", ".join(f"{min(1.0, max(0.0, value)):.2f}" for value in corners) + "]"


@SOURCES.register("refcoco", RefCOCOConfig)
class RefCOCO(Adapter):
    family, modality = "qa", "image"
    config: RefCOCOConfig

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        instances = read_json(sources.file(self.config.instances))
        images = {image["id"]: image for image in instances["images"]}
        boxes = {annotation["id"]: annotation["bbox"] for annotation in instances["annotations"]}
        ours = {theirs: split for split in SPLITS for theirs in getattr(self.config.splits, split)}
        files = sources.media(IMAGE_SUFFIXES)
        for ref in load_refs(sources.file(self.config.refs)):
            if (split := ours.get(ref["split"])) is None:
                continue
            image = images[ref["image_id"]]
            answer = box_text(boxes[ref["ann_id"]], image["width"], image["height"])
            name = image["file_name"]
            for sentence in ref["sentences"]:
                instruction = self.config.prompt.format(expression=sentence["sent"])
                key = f"{ref['ref_id']}-{sentence['sent_id']}"
                writer.add(split, key, instruction, [answer], files.get(name), name)
