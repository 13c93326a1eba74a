"""Science questions about an image from ScienceQA (Lu et al. 2022), multiple choice as CoIN asks them::

    problems.json  {"5": {"question": "Which animal's feet are also adapted for sticking to smooth surfaces?",
                          "choices": ["tiger", "tokay gecko"], "answer": 1, "hint": "...",
                          "image": "image.png", "split": "train", ...}, ...}
    train.zip      train/<problem id>/image.png   (val.zip and test.zip likewise)

Only the questions with an image are converted (the text-only half of ScienceQA is no image task). The
instruction holds the context (``hint``), the question and the lettered options, "Context: ... Which
animal's ...? A. tiger B. tokay gecko Answer with the option's letter ...", and the answer is the
letter, "B". Every image is called ``image.png``, so each is linked as ``media/<problem id>-image.png``.

Family ``qa`` with the letter as answer rather than ``multiple_choice``: CoIN and MoDE score ScienceQA
by generation, the model writing a letter that is compared with the gold one, which is what ``qa``'s
exact match does. ``multiple_choice`` picks the option whose text the model finds likeliest
(lm-evaluation-harness's protocol), another measure that never sees a malformed answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import ascii_uppercase

from mmcl.config.schema import DatasetConfig
from mmcl.data import SOURCES
from mmcl.data.sources.base import IMAGE_SUFFIXES, Adapter, DatasetWriter, Sources, read_json


@dataclass
class ScienceQAConfig(DatasetConfig):
    adapter: str = "scienceqa"
    problems: str = "problems.json"
    answer_prompt: str = "Answer with the option's letter from the given choices directly."  # ends the instruction


@SOURCES.register("scienceqa", ScienceQAConfig)
class ScienceQA(Adapter):
    family, modality = "qa", "image"
    config: ScienceQAConfig

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        # <problem id>/<image file> -> path: the image files of all problems share one name
        images = {(path.parent.name, path.name): path for path in sources.media_files(IMAGE_SUFFIXES)}
        for pid, problem in read_json(sources.file(self.config.problems)).items():
            if not problem["image"]:
                continue
            options = [f"{ascii_uppercase[i]}. {choice}" for i, choice in enumerate(problem["choices"])]
            context = [f"Context: {problem['hint']}"] if problem["hint"] else []
            instruction = " ".join([*context, problem["question"], *options, self.config.answer_prompt])
            letter = ascii_uppercase[problem["answer"]]
            name = f"{pid}-{problem['image']}"
            wanted = str(Path(problem["split"]) / pid / problem["image"])
            image = images.get((pid, problem["image"]))
            writer.add(problem["split"], pid, instruction, [letter], image, wanted, name=name)
