"""Tests for mmcl.metrics: CL metrics on hand-computed matrices, QA scoring, pycocoevalcap captioning."""

from __future__ import annotations

import math
import os
import subprocess

import numpy as np
import pytest

from mmcl.metrics import captioning, continual, qa

NAN = float("nan")

# Sequential run, 3 tasks. Every column's max is on the diagonal, so forgetting == -BWT.
R3 = [
    [80, 10, 20],
    [60, 70, 30],
    [50, 65, 90],
]
B3 = [5, 8, 15]

# Sequential run, 4 tasks. Task 0 peaks after stage 1 (60 > 50) and task 1 after stage 2 (45 > 40),
# so max-based forgetting exceeds -BWT. Upper triangle never evaluated (NaN).
R4 = [
    [50, NAN, NAN, NAN],
    [60, 40, NAN, NAN],
    [55, 45, 70, NAN],
    [30, 42, 65, 80],
]


def assert_metrics(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(actual[key]), key
        else:
            assert actual[key] == pytest.approx(value), key


# ---------------------------------------------------------------- continual-learning metrics


def test_summary_3x3_by_hand():
    assert_metrics(
        continual.summarize(R3, B3),
        {
            "last": 205 / 3,  # (50 + 65 + 90) / 3 = 68.33
            "avg": (80 + 65 + 205 / 3) / 3,  # stage means 80, (60+70)/2 = 65, 68.33 -> 71.11
            "forgetting": 17.5,  # task 0: max(80, 60) - 50 = 30; task 1: 70 - 65 = 5; mean 17.5
            "bwt": -17.5,  # task 0: 50 - 80 = -30; task 1: 65 - 70 = -5; mean -17.5
            "fwt": 8.5,  # task 1: R[0][1] - b1 = 10 - 8 = 2; task 2: R[1][2] - b2 = 30 - 15 = 15; mean 8.5
            "learn": 80.0,  # (80 + 70 + 90) / 3
        },
    )


def test_forgetting_equals_minus_bwt_when_max_is_on_the_diagonal():
    assert continual.forgetting(R3) == pytest.approx(-continual.backward_transfer(R3))


def test_summary_4x4_by_hand_with_missing_upper_triangle():
    assert_metrics(
        continual.summarize(R4, b=[0, 0, 0, 0]),
        {
            "last": 54.25,  # (30 + 42 + 65 + 80) / 4 = 217 / 4
            # stage means: 50; 50 (= (60+40)/2); 170/3 = 56.67 (= (55+45+70)/3); 54.25 -> 2531/48 = 52.73
            "avg": 2531 / 48,
            # task 0: max(50, 60, 55) - 30 = 30; task 1: max(40, 45) - 42 = 3; task 2: 70 - 65 = 5; 38/3
            "forgetting": 38 / 3,
            # task 0: 30 - 50 = -20; task 1: 42 - 40 = +2; task 2: 65 - 70 = -5; -23/3 = -7.67
            "bwt": -23 / 3,
            "fwt": NAN,  # needs R[i-1][i], never evaluated here
            "learn": 60.0,  # (50 + 40 + 70 + 80) / 4
        },
    )
    assert continual.forgetting(R4) > -continual.backward_transfer(R4)


def test_subset_of_columns():
    assert_metrics(
        continual.summarize(R3, B3, subset={0, 2}),
        {
            "last": 70.0,  # (50 + 90) / 2
            "avg": 70.0,  # stage 0: 80; stage 1: 60 (only task 0 seen); stage 2: (50 + 90) / 2 = 70; mean 70
            "forgetting": 30.0,  # only task 0 (task 2 is the last task): 80 - 50
            "bwt": -30.0,  # 50 - 80
            "fwt": 15.0,  # only task 2: 30 - 15
            "learn": 85.0,  # (80 + 90) / 2
        },
    )


def test_subset_of_the_last_task_only():
    assert_metrics(
        continual.summarize(R3, B3, subset=[2]),
        # Avg only counts stage 2, the first that has seen task 2; nothing is forgotten from the last task.
        {"last": 90.0, "avg": 90.0, "forgetting": NAN, "bwt": NAN, "fwt": 15.0, "learn": 90.0},
    )


def test_first_task_has_no_forward_transfer():
    assert math.isnan(continual.forward_transfer(R3, B3, subset=[0]))


def test_empty_subset_is_nan_everywhere():
    assert all(math.isnan(value) for value in continual.summarize(R3, B3, subset=[]).values())


def test_single_stage_run():
    assert_metrics(
        continual.summarize([[42.0]], [10.0]),
        {"last": 42.0, "avg": 42.0, "forgetting": NAN, "bwt": NAN, "fwt": NAN, "learn": 42.0},
    )


def test_final_row_only_defines_last_only():
    joint = np.array([[30, 42, 65, 80]])
    assert_metrics(
        continual.summarize(joint, [0, 0, 0, 0], subset=[1, 3]),
        {"last": 61.0, "avg": NAN, "forgetting": NAN, "bwt": NAN, "fwt": NAN, "learn": NAN},
    )


def test_missing_cell_makes_the_metric_nan():
    matrix = np.array(R3, dtype=float)
    matrix[2, 1] = NAN
    summary = continual.summarize(matrix, B3)
    assert math.isnan(summary["last"])
    assert math.isnan(summary["forgetting"])
    assert summary["learn"] == pytest.approx(80.0)
    assert continual.last(matrix, subset=[0, 2]) == pytest.approx(70.0)


def test_without_zero_shot_row_fwt_is_nan():
    assert math.isnan(continual.summarize(R3)["fwt"])


@pytest.mark.parametrize("bad", [[1.0, 2.0], [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.zeros((2, 3)), [[]]])
def test_bad_matrix_shapes(bad):
    with pytest.raises(ValueError, match="shape"):
        continual.last(bad)


def test_bad_zero_shot_row_and_subset():
    with pytest.raises(ValueError, match="zero-shot"):
        continual.forward_transfer(R3, [1, 2])
    with pytest.raises(ValueError, match="outside"):
        continual.last(R3, subset=[3])
    with pytest.raises(ValueError, match="outside"):
        continual.forgetting([[1, 2, 3]], subset=[-1])


# ---------------------------------------------------------------- question answering


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Red.", "red"),
        ("  an   apple ", "apple"),
        ("a dog, the cat", "dog cat"),
        ("two", "2"),
        ("Ten!", "10"),
        ("3.5", "3.5"),
        ("1,000", "1000"),
        ("don't", "dont"),
        ("red-blue", "red blue"),
        ("\u201cyes\u201d", "yes"),
        ("theatre", "theatre"),
    ],
)
def test_normalize_answer(text, normalized):
    assert qa.normalize_answer(text) == normalized


def test_exact_match():
    assert qa.exact_match("Two.", ["2"]) == 1.0
    assert qa.exact_match("the red one", ["blue", "Red 1"]) == 1.0
    assert qa.exact_match("red", ["blue"]) == 0.0
    assert qa.exact_match("the", ["a"]) == 0.0  # empty after normalisation never matches
    with pytest.raises(TypeError):
        qa.exact_match("r", "red")


def test_vqa_accuracy_counts_annotators():
    answers = ["red", "Red.", "blue", "blue", "blue", "the blue"]
    assert qa.vqa_accuracy("red", answers) == pytest.approx(2 / 3)
    assert qa.vqa_accuracy("blue", answers) == 1.0
    assert qa.vqa_accuracy("green", answers) == 0.0


def test_accuracy_percent():
    predictions = {1: "Two", 2: "a cat", 3: "no"}
    references = {1: ["2"], 2: ["dog"], 3: ["No."]}
    assert qa.accuracy(predictions, references) == pytest.approx(200 / 3)
    soft = qa.accuracy({1: "red"}, {1: ["red", "red", "blue"]}, score=qa.vqa_accuracy)
    assert soft == pytest.approx(200 / 3)  # 2 of 3 annotators agree


def test_accuracy_rejects_mismatched_or_empty_ids():
    with pytest.raises(ValueError, match=r"have no prediction \('q3'\).*no reference \('q9'\)"):
        qa.accuracy({"q1": "a", "q2": "b", "q9": "c"}, {"q1": ["a"], "q2": ["b"], "q3": ["c"]})
    with pytest.raises(ValueError, match="zero items"):
        qa.accuracy({}, {})


# ---------------------------------------------------------------- captioning (real pycocoevalcap, Java)

REFERENCES = {
    "a": ["a man rides a red bicycle down the street", "a cyclist on a red bike in the city"],
    "b": ["two dogs play with a ball on the grass", "dogs chasing a ball in a park"],
    "c": ["a plate of pasta with tomato sauce", "spaghetti with red sauce on a white plate"],
    "d": ["a child flies a kite on the beach", "a kid with a kite near the ocean"],
    "e": ["an airplane takes off from the runway", "a jet plane leaving the airport"],
    "f": ["a cat sleeps on a wooden chair", "a sleeping cat curled up on a chair"],
}
IDS = list(REFERENCES)
MATCHING = {i: REFERENCES[i][0] for i in IDS}
SHUFFLED = {i: REFERENCES[IDS[(k + 1) % len(IDS)]][0] for k, i in enumerate(IDS)}
# Same captions with line breaks, the METEOR separator, odd spacing and accents: must not shift alignment.
MESSY = {i: caption.replace(" ", "\r\n", 1).replace(" a ", " ||| a ") for i, caption in MATCHING.items()}
MESSY["f"] = "a café cat sleeps on a wooden chair"
SAME_REFERENCES = {i: ["a photo of something"] for i in IDS}
EMPTY = {i: "" if k % 2 else "..." for k, i in enumerate(IDS)}

CORPORA = {
    "matching": (MATCHING, REFERENCES),
    "shuffled": (SHUFFLED, REFERENCES),
    "messy": (MESSY, {**REFERENCES, "f": ["a café cat sleeps on a wooden chair"]}),
    "same_references": (MATCHING, SAME_REFERENCES),
    "empty": (EMPTY, REFERENCES),
}


@pytest.fixture(scope="module")
def job():
    """Score all corpora in one job, recording LC_ALL as seen by every java subprocess."""
    real_popen = subprocess.Popen
    java_calls: list[str | None] = []

    def recording_popen(cmd, *args, **kwargs):
        if cmd[0] == "java":
            java_calls.append(os.environ.get("LC_ALL"))
        return real_popen(cmd, *args, **kwargs)

    lc_all_before = os.environ.get("LC_ALL")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess, "Popen", recording_popen)
        scores = captioning.caption_scores(CORPORA)
    return {"scores": scores, "java_calls": java_calls, "lc_all_before": lc_all_before}


def test_one_java_call_for_all_corpora(job):
    assert job["java_calls"] == ["C.UTF-8"]
    assert os.environ.get("LC_ALL") == job["lc_all_before"]
    assert job["scores"].keys() == CORPORA.keys()


def test_scores_are_in_range(job):
    for scores in job["scores"].values():
        assert scores.keys() == {"cider", "bleu4", "rouge_l"}
        assert 0 <= scores["bleu4"] <= 100 + 1e-6
        assert 0 <= scores["rouge_l"] <= 100 + 1e-6
        assert scores["cider"] >= 0


def test_matching_captions_beat_shuffled_ones(job):
    matching, shuffled = job["scores"]["matching"], job["scores"]["shuffled"]
    assert matching["cider"] > 300 > 10 > shuffled["cider"]
    assert matching["bleu4"] == pytest.approx(100)
    assert matching["rouge_l"] == pytest.approx(100)
    assert shuffled["rouge_l"] < 50


def test_sanitized_captions_stay_aligned(job):
    assert job["scores"]["messy"]["rouge_l"] == pytest.approx(100)


def test_empty_predictions_score_zero(job):
    assert job["scores"]["empty"]["cider"] == 0
    assert job["scores"]["empty"]["rouge_l"] == 0


def test_identical_references_give_zero_cider(job):
    # pycocoevalcap's CIDEr-D takes document frequencies from the scored corpus's references: an n-gram
    # in every item's references has idf log(N/N) = 0, so a corpus of identical references scores 0.
    assert job["scores"]["same_references"]["cider"] == 0


def test_corpora_are_scored_independently(job):
    # Document frequencies come from each corpus alone: scoring one corpus by itself gives the same numbers.
    alone = captioning.caption_scores({"x": CORPORA["matching"]}, metrics=["cider", "rouge_l"])
    assert alone["x"] == pytest.approx({k: job["scores"]["matching"][k] for k in ("cider", "rouge_l")})


def test_mismatched_ids_name_the_corpus():
    extra_id = ({**MATCHING, "zz": "x"}, REFERENCES)
    with pytest.raises(ValueError, match=r"corpus 'vatex'.*'zz'"):
        captioning.caption_scores({"coco": CORPORA["matching"], "vatex": extra_id})


def test_invalid_references_and_metrics():
    with pytest.raises(ValueError, match="non-empty list"):
        captioning.caption_scores({"c": ({"a": "x"}, {"a": "a dog"})})
    with pytest.raises(ValueError, match="empty reference"):
        captioning.caption_scores({"c": ({"a": "x"}, {"a": ["a dog", " \n"]})})
    with pytest.raises(ValueError, match="metrics"):
        captioning.caption_scores({"c": ({"a": "x"}, {"a": ["a dog"]})}, metrics=["meteor"])


def test_missing_java_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(captioning.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="default-jre-headless"):
        captioning.caption_scores({"c": ({"a": "x"}, {"a": ["a dog"]})})
