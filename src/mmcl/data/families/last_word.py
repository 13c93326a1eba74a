"""Last-word completion, LAMBADA-style: the instruction is a passage without its last word, the
answer that word. Greedy generation; the first generated word must match it exactly (after the
VQA-style normalisation of ``mmcl.metrics.qa``), whatever the model generates after it.
"""

from __future__ import annotations

from mmcl.data import TASK_FAMILIES
from mmcl.data.families import Corpus, TaskFamily


@TASK_FAMILIES.register("last_word")
class LastWord(TaskFamily):
    metrics = ("accuracy",)
    primary = "accuracy"
    linguistic = "nlg"

    def score(self, corpora: dict[str, Corpus]) -> dict[str, dict[str, float]]:
        from mmcl.metrics.qa import accuracy, first_word_match

        return {task: {"accuracy": accuracy(preds, refs, first_word_match)} for task, (preds, refs) in corpora.items()}
