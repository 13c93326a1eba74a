"""Image question answering in the VQA format (OK-VQA; also VQA v2): per split, a questions file and an
annotations file with every annotator's answer::

    {"questions": [{"question_id": 2971475, "image_id": 297147, "question": "What sport can you use this for?"}]}
    {"annotations": [{"question_id": 2971475, "answers": [{"answer": "race", ...}, ... ten in all]}]}

A sample's answers are the annotators' answers with their repeats (the ``vqa`` metric counts them), the
most frequent first (the training target). Images are COCO's, found anywhere among the dataset's files
by the number that ends their name (``COCO_val2014_000000297147.jpg``). MoInCL trains on OK-VQA's
train2014 questions and tests on its val2014 questions, the defaults below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmcl.config.schema import DatasetConfig
from mmcl.data import SOURCES
from mmcl.data.sources.base import (
    IMAGE_SUFFIXES,
    Adapter,
    DatasetWriter,
    Sources,
    SplitFiles,
    by_frequency,
    read_json,
)


@dataclass
class VQAConfig(DatasetConfig):
    adapter: str = "vqa"
    questions: SplitFiles = field(
        default_factory=lambda: SplitFiles(
            train="OpenEnded_mscoco_train2014_questions.json", test="OpenEnded_mscoco_val2014_questions.json"
        )
    )
    annotations: SplitFiles = field(
        default_factory=lambda: SplitFiles(
            train="mscoco_train2014_annotations.json", test="mscoco_val2014_annotations.json"
        )
    )


@SOURCES.register("vqa", VQAConfig)
class VQA(Adapter):
    family, modality = "qa", "image"
    config: VQAConfig

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        images = {}
        for name, path in sources.media(IMAGE_SUFFIXES).items():
            number = Path(name).stem.rsplit("_", 1)[-1]
            if number.isdigit():
                images.setdefault(int(number), path)
        for split, questions_file in self.config.questions.given():
            annotations = read_json(sources.file(getattr(self.config.annotations, split)))["annotations"]
            answers = {entry["question_id"]: [a["answer"] for a in entry["answers"]] for entry in annotations}
            for question in read_json(sources.file(questions_file))["questions"]:
                ranked = by_frequency(answers[question["question_id"]])
                image = int(question["image_id"])
                wanted = f"image {image}"
                key = str(question["question_id"])
                writer.add(split, key, question["question"], ranked, images.get(image), wanted)
