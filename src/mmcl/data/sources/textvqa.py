"""Question answering that needs reading the text in the image: TextVQA (``TextVQA_0.5.1_<split>.json``)::

    {"dataset_name": "textvqa", "data": [{"question_id": 34602, "image_id": "003a8ae2ef43b901",
      "question": "what is the brand of this camera?", "answers": ["dakota", "dakota digital", ... ten in all]}]}

A sample's answers are the ten annotators' with their repeats, the most frequent first (TextVQA is
scored with the ``vqa`` metric). The instruction is the question alone (the study's "TextVQA-Pure";
no OCR tokens are added). Images (``train_val_images.zip``: ``train_images/003a8ae2ef43b901.jpg``, the
val images among them) are found by their id. The study evaluates on the val questions, the test split here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmcl.data import SOURCES
from mmcl.data.sources.base import ImageQuestions, QuestionFilesConfig, SplitFiles, by_frequency


@dataclass
class TextVQAConfig(QuestionFilesConfig):
    adapter: str = "textvqa"
    questions: SplitFiles = field(
        default_factory=lambda: SplitFiles(train="TextVQA_0.5.1_train.json", test="TextVQA_0.5.1_val.json")
    )


@SOURCES.register("textvqa", TextVQAConfig)
class TextVQA(ImageQuestions):
    config: TextVQAConfig

    def questions(self, data):
        for question in data["data"]:
            yield (
                str(question["question_id"]),
                question["question"],
                by_frequency(question["answers"]),
                question["image_id"],
            )
