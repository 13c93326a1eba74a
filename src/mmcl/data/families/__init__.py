"""Task families: how a task's samples become training targets and how its predictions are scored.

A family is one module here, registered in ``mmcl.data.TASK_FAMILIES``; ``params.yaml`` names it in
``suites.<suite>.tasks.<task>.family``, and picks one of its ``scorers`` with ``metric:``.
"""

from __future__ import annotations

import random

from mmcl.data.records import Sample

Corpus = tuple[dict[str, str], dict[str, list[str]]]  # (id -> prediction, id -> accepted answers)


class TaskFamily:
    metrics: tuple[str, ...] = ()
    primary: str = ""
    # How evaluation predicts (``mmcl.evaluation.predict``): "generate" (greedy decoding), "likelihood"
    # (the option the model finds likeliest; the samples carry ``options``) or "generate_image" (image
    # tokens after the prompt, decoded and read by the suite's judge).
    prediction: str = "generate"
    # The sample's media is what the model must produce (image generation), not what it reads.
    media_in_target: bool = False
    # The linguistic ability a text-only task of this family measures ("nlu" | "nlg"), for the
    # linguistic-forgetting metrics (``mmcl.metrics.linguistic``); None: it counts toward neither.
    linguistic: str | None = None
    scorers: tuple[str, ...] = ()  # the values a task's `metric:` may take; the first is the default

    def __init__(self, metric: str | None = None):
        self.metric = metric or next(iter(self.scorers), None)

    def target(self, sample: Sample, rng: random.Random) -> str:
        """The text a training step supervises for this sample."""
        return sample.answers[0]

    def score(self, corpora: dict[str, Corpus]) -> dict[str, dict[str, float]]:
        """Scores (already scaled: percent, CIDEr x100) for every task's corpus, in one call (all the
        corpora of one call are scored with this instance's ``metric``)."""
        raise NotImplementedError
