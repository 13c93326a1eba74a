"""Question answering with short answers (or boxes), scored after VQA-style normalisation (boxes: by overlap).

``metric: exact`` (default): a prediction is right when it equals one of the sample's answers.
``metric: vqa`` (OK-VQA): it scores ``min(1, #annotators who gave it / 3)`` over the full annotator list.
``metric: box`` (RefCOCO): right when the first "[x1, y1, x2, y2]" in it overlaps the answer's box with IoU >= 0.5.
All report ``accuracy`` in percent, so a table averages them over the QA tasks as MoInCL does.
"""

from __future__ import annotations

from mmcl.data import TASK_FAMILIES
from mmcl.data.families import Corpus, Summary, TaskFamily


@TASK_FAMILIES.register("qa")
class QuestionAnswering(TaskFamily):
    metrics = ("accuracy",)
    primary = "accuracy"
    per_item = True
    summary = Summary("acc", "accuracy")
    scorers = ("exact", "vqa", "box")

    def score(self, corpora: dict[str, Corpus]) -> dict[str, dict[str, float]]:
        from mmcl.metrics import qa

        return {task: {"accuracy": qa.accuracy(p, refs, self.item_score)} for task, (p, refs) in corpora.items()}

    def item_score(self, prediction: str, answers: list[str]) -> float:
        from mmcl.metrics import qa

        per_item = {"exact": qa.exact_match, "vqa": qa.vqa_accuracy, "box": qa.box_accuracy}[self.metric]
        return per_item(prediction, answers)
