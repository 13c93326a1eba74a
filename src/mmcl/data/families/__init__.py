"""Task families: how a task's samples become training targets, how its predictions are made and scored,
and how its scores are summarised over an order.

A family is one module here, registered in ``mmcl.data.TASK_FAMILIES``; ``params.yaml`` names it in
``suites.<suite>.tasks.<task>.family``, and picks one of its ``scorers`` with ``metric:``.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, NamedTuple

from mmcl.data import TASK_FAMILIES
from mmcl.data.instructions import INSTRUCTIONS_TASK
from mmcl.data.records import Sample

if TYPE_CHECKING:
    from mmcl.config.schema import SuiteConfig

Corpus = tuple[dict[str, str], dict[str, list[str]]]  # (id -> prediction, id -> accepted answers)


class Summary(NamedTuple):
    """How an order's run-level metrics average a family's tasks: in ``metric``, named with ``suffix``
    (``last_acc``, ``forgetting_cider``, ...)."""

    suffix: str
    metric: str


class TaskFamily:
    metrics: tuple[str, ...] = ()
    primary: str = ""
    # How evaluation predicts (``mmcl.jobs.evaluate.predict``): "generate" (greedy decoding), "likelihood"
    # (the option the model finds likeliest; the samples carry ``options``) or "generate_image" (image
    # tokens after the prompt, decoded and read by the suite's judge).
    prediction: str = "generate"
    # The sample's media is what the model must produce (image generation), not what it reads.
    media_in_target: bool = False
    # The linguistic ability a text-only task of this family measures ("nlu" | "nlg"), for the
    # linguistic-forgetting metrics (``mmcl.metrics.linguistic``); None: it counts toward neither.
    linguistic: str | None = None
    scorers: tuple[str, ...] = ()  # the values a task's `metric:` may take; the first is the default
    per_item: bool = False  # scored item by item (``item_score``): each prediction is right or wrong
    # The run-level metrics averaged over the order's tasks of this family (``mmcl.metrics.continual``);
    # None: its tasks enter only the all-task averages, each in its primary metric.
    summary: Summary | None = None

    def __init__(self, metric: str | None = None):
        self.metric = metric or next(iter(self.scorers), None)

    def target(self, sample: Sample, rng: random.Random) -> str:
        """The text a training step supervises for this sample."""
        return sample.answers[0]

    def score(self, corpora: dict[str, Corpus]) -> dict[str, dict[str, float]]:
        """Scores (already scaled: percent, CIDEr x100) for every task's corpus, in one call (all the
        corpora of one call are scored with this instance's ``metric``)."""
        raise NotImplementedError

    def item_score(self, prediction: str, answers: list[str]) -> float | None:
        """One prediction's score in [0, 1], whose mean ×100 is the primary metric (``per_item`` families;
        None for one scored on the corpus as a whole, as CIDEr is)."""
        return None


# Stage-0 samples that show a generation sample's image with no instruction and supervise its answer,
# so that a model learning to draw also learns to read what it draws (``mmcl.models.backbones.unified``).
READ_BACK_TASK = "read_back"
# Captioned images read the other way round, caption in, image out: image-generation sequences drawn from
# a captioning dataset (MoDE's distillation on real image-text pairs, ``mmcl.methods.mode``).
DRAW_CAPTIONS_TASK = "draw_captions"


def suite_families(suite: SuiteConfig) -> dict[str, TaskFamily]:
    """The family of every task a stage of ``suite`` may train or evaluate, each with its task's metric, and
    of the sequences trained besides them: instruction pools (IKD) and read-back drawings are trained on
    their one answer, drawn captions are generation."""
    families = {name: TASK_FAMILIES.get(task.family)(task.metric) for name, task in suite.tasks.items()}
    families[INSTRUCTIONS_TASK] = TaskFamily()
    families[READ_BACK_TASK] = TaskFamily()
    families[DRAW_CAPTIONS_TASK] = TASK_FAMILIES.get("generation")()
    return families


def generates_images(family: str) -> bool:
    """Whether a family's tasks are answered with an image (a name no family has, e.g. lm-eval's, is not)."""
    return family in TASK_FAMILIES.names() and TASK_FAMILIES.get(family).prediction == "generate_image"


def generation_tasks(suite: SuiteConfig) -> list[str]:
    """The suite's image-generation tasks: what a unified backbone learns to draw and the judge scores."""
    return [name for name, task in suite.tasks.items() if generates_images(task.family)]


def summaries() -> dict[str, tuple[str, Summary]]:
    """Suffix -> (family, its summary) of every family whose tasks an order's metrics are averaged over."""
    found = {}
    for name in TASK_FAMILIES.names():
        if (summary := TASK_FAMILIES.get(name).summary) is not None:
            found[summary.suffix] = (name, summary)
    return found
