"""Captioning: free-text descriptions scored with pycocoevalcap (CIDEr-D primary, BLEU-4, ROUGE-L)."""

from __future__ import annotations

import random

from mmcl.data import TASK_FAMILIES
from mmcl.data.families import Corpus, Summary, TaskFamily
from mmcl.data.records import Sample


@TASK_FAMILIES.register("captioning")
class Captioning(TaskFamily):
    metrics = ("cider", "bleu4", "rouge_l")
    primary = "cider"
    summary = Summary("cider", "cider")

    def target(self, sample: Sample, rng: random.Random) -> str:
        # A different reference each time the sample is drawn: the model sees the paraphrases.
        return rng.choice(sample.answers)

    def score(self, corpora: dict[str, Corpus]) -> dict[str, dict[str, float]]:
        from mmcl.metrics.captioning import caption_scores

        return caption_scores(corpora, metrics=self.metrics)
