"""Question answering with short answers, scored after VQA-style normalisation.

``metric: exact`` (default): a prediction is right when it equals one of the sample's answers.
``metric: vqa`` (OK-VQA): it scores ``min(1, #annotators who gave it / 3)`` over the full annotator list.
Both report ``accuracy`` in percent, so a table averages them over the QA tasks as MoInCL does.
"""

from __future__ import annotations

from mmcl.data import TASK_FAMILIES
from mmcl.data.families import Corpus, TaskFamily


@TASK_FAMILIES.register("qa")
class QuestionAnswering(TaskFamily):
    metrics = ("accuracy",)
    primary = "accuracy"
    scorers = ("exact", "vqa")

    def score(self, corpora: dict[str, Corpus]) -> dict[str, dict[str, float]]:
        from mmcl.metrics import qa

        per_item = {"exact": qa.exact_match, "vqa": qa.vqa_accuracy}[self.metric]
        return {task: {"accuracy": qa.accuracy(preds, refs, per_item)} for task, (preds, refs) in corpora.items()}
