"""Multiple choice, scored as lm-evaluation-harness scores it: by likelihood, not by generation.

Each sample carries its ``options``; ``answers[0]`` is the gold one and the training target.
Evaluation predicts the option whose tokens have the highest summed log-likelihood after the prompt
(``mmcl.jobs.evaluate.choose``); accuracy is the share of samples where that is the gold option.
"""

from __future__ import annotations

from mmcl.data import TASK_FAMILIES
from mmcl.data.families import Corpus, TaskFamily


def is_gold(prediction: str, answers: list[str]) -> float:
    """The chosen option is one of the sample's own strings: compare it as it is, not normalised."""
    return float(prediction == answers[0])


@TASK_FAMILIES.register("multiple_choice")
class MultipleChoice(TaskFamily):
    metrics = ("accuracy",)
    primary = "accuracy"
    per_item = True
    prediction = "likelihood"
    linguistic = "nlu"

    def score(self, corpora: dict[str, Corpus]) -> dict[str, dict[str, float]]:
        from mmcl.metrics.qa import accuracy

        return {task: {"accuracy": accuracy(preds, refs, is_gold)} for task, (preds, refs) in corpora.items()}

    def item_score(self, prediction: str, answers: list[str]) -> float:
        return is_gold(prediction, answers)
