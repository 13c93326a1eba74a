"""Per-item forgetting: which test items a model answered right when it learned a task and wrong after
the last stage ("lost"), and the reverse ("gained"). An item is right when its per-item score
(``TaskFamily.item_score``) is 1: exact match, the chosen option, VQA agreement of 3 annotators."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Flips:
    items: int  # scored at both stages
    lost: tuple[str, ...]  # right when learned, wrong at the end
    gained: tuple[str, ...]  # wrong when learned, right at the end

    @property
    def lost_rate(self) -> float:
        return 100 * len(self.lost) / self.items if self.items else float("nan")

    @property
    def gained_rate(self) -> float:
        return 100 * len(self.gained) / self.items if self.items else float("nan")


def flips(
    learned: Mapping[str, str],
    final: Mapping[str, str],
    answers: Mapping[str, Sequence[str]],
    item_score: Callable[[str, Sequence[str]], float],
) -> Flips:
    """The flips of the items predicted at both stages (``learned``, ``final``: item id -> prediction)."""
    both = sorted(set(learned) & set(final) & set(answers))
    right = {
        stage: {i for i in both if item_score(preds[i], answers[i]) == 1}
        for stage, preds in (("learned", learned), ("final", final))
    }
    lost = tuple(i for i in both if i in right["learned"] and i not in right["final"])
    gained = tuple(i for i in both if i not in right["learned"] and i in right["final"])
    return Flips(len(both), lost, gained)
