"""Question-answering scores: VQA-style answer normalisation, exact match, OK-VQA soft accuracy, and
referring-expression accuracy on boxes written as text."""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Hashable, Mapping, Sequence

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_DIGITS = {word: str(value) for value, word in enumerate(_NUMBER_WORDS)}
_ARTICLES = frozenset({"a", "an", "the"})
# Dropped without a space so that "don't" and "dog's" stay one word.
_APOSTROPHES = re.compile("['\u2019]")
# "1,000" -> "1000"; a comma anywhere else separates words.
_THOUSANDS_SEPARATOR = re.compile(r"(?<=\d),(?=\d)")
# A period is kept only as a decimal point ("3.5"); elsewhere it separates words.
_NON_DECIMAL_PERIOD = re.compile(r"\.(?!\d)|(?<!\d)\.")


def _is_punctuation(char: str) -> bool:
    return char in string.punctuation or unicodedata.category(char).startswith("P")


def normalize_answer(text: str) -> str:
    """VQA-style normalisation so that "The Red." and "red", or "two" and "2", compare equal.

    NFKC-normalise, lowercase, drop apostrophes and thousands separators, turn every other ASCII or
    Unicode punctuation character into a space (keeping decimal points between digits), map the number
    words zero..ten to digits, drop the articles a/an/the and collapse whitespace.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = _APOSTROPHES.sub("", text)
    text = _THOUSANDS_SEPARATOR.sub("", text)
    text = _NON_DECIMAL_PERIOD.sub(" ", text)
    text = "".join(" " if char != "." and _is_punctuation(char) else char for char in text)
    words = (_DIGITS.get(word, word) for word in text.split())
    return " ".join(word for word in words if word not in _ARTICLES)


def _normalized_answers(answers: Sequence[str]) -> list[str]:
    # A bare string would be iterated character by character and match single letters.
    if isinstance(answers, str):
        raise TypeError(f"answers must be a list of strings, not the string {answers!r}")
    return [normalize_answer(answer) for answer in answers]


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised answer, else 0.0.

    A prediction that normalises to the empty string (e.g. "the", "...") never matches.
    """
    predicted = normalize_answer(prediction)
    return float(bool(predicted) and predicted in _normalized_answers(answers))


def first_word_match(prediction: str, answers: Sequence[str]) -> float:
    """LAMBADA-style: ``exact_match`` of the prediction's first word only (what follows it is ignored)."""
    words = prediction.split()
    return exact_match(words[0] if words else "", answers)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """OK-VQA soft accuracy: ``min(1, #{answers equal to the prediction after normalisation} / 3)``.

    ``answers`` is the full annotator list with its duplicates (they are what the count measures).
    This is the simple form used by OK-VQA style evaluations, not the official VQA average over the
    ten leave-one-annotator-out subsets. An empty normalised prediction scores 0.
    """
    predicted = normalize_answer(prediction)
    if not predicted:
        return 0.0
    return min(1.0, _normalized_answers(answers).count(predicted) / 3)


_NUMBER = r"\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*"
BOX = re.compile(rf"\[{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}\]")  # "[x1, y1, x2, y2]", as LLaVA-1.5 writes regions
BOX_IOU = 0.5  # RefCOCO's threshold: a box this close to the referred object's finds it


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """The first "[x1, y1, x2, y2]" in ``text`` (None: there is none)."""
    match = BOX.search(text)
    return tuple(float(value) for value in match.groups()) if match else None


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; a box with its corners swapped is empty."""

    def area(box):
        return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])

    inner = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    union = area(a) + area(b) - area(inner)
    return area(inner) / union if union > 0 else 0.0


def box_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the first box in the prediction overlaps an answer's box with IoU >= 0.5 (RefCOCO accuracy),
    whatever the number of decimals or the text around it; 0.0 when the prediction holds no box."""
    if isinstance(answers, str):
        raise TypeError(f"answers must be a list of strings, not the string {answers!r}")
    predicted = parse_box(prediction)
    references = [box for answer in answers if (box := parse_box(answer))]
    return float(predicted is not None and any(box_iou(predicted, box) >= BOX_IOU for box in references))


def _describe_ids(ids: set[Hashable], limit: int = 5) -> str:
    shown = sorted(ids, key=repr)[:limit]
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(repr(i) for i in shown) + more


def check_same_ids(predictions: Mapping, references: Mapping, what: str = "predictions") -> None:
    """Raise ValueError naming a few missing and extra ids unless both mappings have the same keys."""
    missing = set(references) - set(predictions)
    extra = set(predictions) - set(references)
    problems = []
    if missing:
        problems.append(f"{len(missing)} ids have no prediction ({_describe_ids(missing)})")
    if extra:
        problems.append(f"{len(extra)} predicted ids have no reference ({_describe_ids(extra)})")
    if problems:
        raise ValueError(f"{what}: prediction and reference ids differ: " + "; ".join(problems))


def accuracy(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    score: Callable[[str, Sequence[str]], float] = exact_match,
) -> float:
    """Mean per-item score ×100 (percent): ``100 * mean_id score(predictions[id], references[id])``.

    ``score`` is ``exact_match`` (one or several ground truths), ``vqa_accuracy`` (OK-VQA), ``box_accuracy`` or any
    other per-item score in [0, 1] (``first_word_match``, a multiple-choice family's own).
    The two mappings must have exactly the same ids, and at least one.
    """
    if not references and not predictions:
        raise ValueError("cannot compute accuracy over zero items")
    check_same_ids(predictions, references)
    return 100.0 * sum(score(predictions[i], references[i]) for i in references) / len(references)
