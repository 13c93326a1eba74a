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

from mmcl.data import SOURCES
from mmcl.data.sources.base import ImageQuestions, QuestionFilesConfig, SplitFiles


@dataclass
class GQAConfig(QuestionFilesConfig):
    adapter: str = "gqa"
    questions: SplitFiles = field(
        default_factory=lambda: SplitFiles(train="val_balanced_questions.json", test="testdev_balanced_questions.json")
    )


@SOURCES.register("gqa", GQAConfig)
class GQA(ImageQuestions):
    config: GQAConfig

    def questions(self, data):
        for key, question in data.items():
            yield key, question["question"], [question["answer"]], str(question["imageId"])
