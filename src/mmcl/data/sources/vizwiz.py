"""Questions blind people asked about their photos, VizWiz-VQA (Gurari et al. 2018): one annotation file
per split (``Annotations.zip``), each a list of::

    {"image": "VizWiz_train_00000000.jpg", "question": "What's the name of this product?",
     "answers": [{"answer": "basil leaves", "answer_confidence": "yes"}, ... ten in all],
     "answerable": 1, "answer_type": "other"}

The VQA format's content (ten annotators' answers, scored with ``metric: vqa``) in another layout: no
separate questions file, and images named rather than numbered; the ``vqa`` adapter's ranking of the
answers is reused. "unanswerable" is an answer like any other, and the instruction says when to give it,
as CoIN's does. The test split's answers are withheld (a leaderboard), so MoDE tests on val: the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmcl.config.schema import DatasetConfig
from mmcl.data import SOURCES
from mmcl.data.sources.base import IMAGE_SUFFIXES, Adapter, DatasetWriter, Sources, SplitFiles, by_frequency, read_json


@dataclass
class VizWizConfig(DatasetConfig):
    adapter: str = "vizwiz"
    splits: SplitFiles = field(default_factory=lambda: SplitFiles(train="train.json", test="val.json"))
    # follows each question ("" for none): the answer "unanswerable" is only learnable when asked for
    answer_prompt: str = (
        "When the provided information is insufficient, respond with 'Unanswerable'. "
        "Answer the question using a single word or phrase."
    )


@SOURCES.register("vizwiz", VizWizConfig)
class VizWiz(Adapter):
    family, modality = "qa", "image"
    config: VizWizConfig

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        images = sources.media(IMAGE_SUFFIXES)
        for split, name in self.config.splits.given():
            for entry in read_json(sources.file(name)):
                answers = by_frequency([answer["answer"] for answer in entry["answers"]])
                instruction = f"{entry['question']} {self.config.answer_prompt}"
                image = entry["image"]
                writer.add(split, Path(image).stem, instruction, answers, images.get(image), image)
