"""Text-to-image generation: the instruction asks for an image, ``media`` holds a real rendering of it
and ``answers[0]`` its attribute string ("red circle top left").

A unified backbone (``mmcl.models.backbones.unified``) learns to write the image's tokens after the prompt.
Evaluation makes it generate exactly one image's worth of image tokens, decodes them to pixels and
lets the suite's judge (``mmcl.models.judge``) read them back: ``gen_score`` is the percentage of
generated images whose colour, shape and position all match the answer string.
"""

from __future__ import annotations

from dataclasses import replace

from mmcl.data import TASK_FAMILIES
from mmcl.data.families import DRAW_CAPTIONS_TASK, READ_BACK_TASK, Corpus, TaskFamily
from mmcl.data.families.multiple_choice import is_gold
from mmcl.data.records import Sample


def read_back(sample: Sample) -> Sample:
    return replace(sample, id=f"{sample.id}-read", task=READ_BACK_TASK, instruction="")


def draw_caption(sample: Sample) -> Sample:
    """A captioning sample as a generation one: its first caption is the prompt, its image the target."""
    return replace(sample, task=DRAW_CAPTIONS_TASK, instruction=sample.answers[0])


@TASK_FAMILIES.register("generation")
class Generation(TaskFamily):
    metrics = ("gen_score",)
    primary = "gen_score"
    prediction = "generate_image"
    media_in_target = True

    def score(self, corpora: dict[str, Corpus]) -> dict[str, dict[str, float]]:
        from mmcl.metrics.qa import accuracy

        # predictions are the judge's reading of each generated image, in the answers' own words
        return {task: {"gen_score": accuracy(preds, refs, is_gold)} for task, (preds, refs) in corpora.items()}
