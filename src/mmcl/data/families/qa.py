"""Question answering with short answers, scored by exact match after VQA-style normalisation."""

from __future__ import annotations

from mmcl.data import TASK_FAMILIES
from mmcl.data.families import Corpus, TaskFamily


@TASK_FAMILIES.register("qa")
class QuestionAnswering(TaskFamily):
    metrics = ("accuracy",)
    primary = "accuracy"

    def score(self, corpora: dict[str, Corpus]) -> dict[str, dict[str, float]]:
        from mmcl.metrics.qa import accuracy

        return {task: {"accuracy": accuracy(preds, refs)} for task, (preds, refs) in corpora.items()}
