"""Compositional question answering on GQA, its balanced question files (``questions1.2.zip``), keyed by
question id::

    {"201307251": {"imageId": "n161313", "question": "Is it overcast?", "answer": "no", "fullAnswer": ...}, ...}

One answer per question, scored by exact match. Images are found by the id that names them
(``images.zip``: ``images/n161313.jpg``). The study only evaluates GQA, on the test-dev balanced
questions (the test split here); the train split defaults to the balanced *val* questions, since the
943K balanced train questions are a 1.3 GB JSON that a converting job must hold in memory (set
``questions.train: train_balanced_questions.json`` to train on them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmcl.config import DatasetConfig
from mmcl.data import SOURCES
from mmcl.data.sources.base import (
    IMAGE_SUFFIXES,
    Adapter,
    DatasetWriter,
    Sources,
    SplitFiles,
    by_stem,
    read_json,
)


@dataclass
class GQAConfig(DatasetConfig):
    adapter: str = "gqa"
    questions: SplitFiles = field(
        default_factory=lambda: SplitFiles(train="val_balanced_questions.json", test="testdev_balanced_questions.json")
    )


@SOURCES.register("gqa", GQAConfig)
class GQA(Adapter):
    family, modality = "qa", "image"
    config: GQAConfig

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        images = by_stem(sources.media(IMAGE_SUFFIXES))
        for split in ("train", "val", "test"):
            if (file := getattr(self.config.questions, split)) is None:
                continue
            for key, question in read_json(sources.file(file)).items():
                image = str(question["imageId"])
                wanted = f"image {image}"
                writer.add(split, key, question["question"], [question["answer"]], images.get(image), wanted)
