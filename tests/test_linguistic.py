"""Linguistic forgetting (NLU/NLG Δ) and the VL score: hand-computed values, and through aggregate_run."""

from __future__ import annotations

import math

import pytest

from mmcl.analyses.runs import parse_run
from mmcl.analyses.tidy import summary_frame
from mmcl.core.io import write_json
from mmcl.core.paths import lm_eval_beside
from mmcl.jobs.aggregate import aggregate_run
from mmcl.jobs.params import load_params
from mmcl.jobs.report import build_reports
from mmcl.metrics.linguistic import harmonic_mean, linguistic_delta, linguistic_summary


def test_harmonic_mean_by_hand():
    assert harmonic_mean([50.0, 100.0]) == pytest.approx(2 / (1 / 50 + 1 / 100))  # 66.67, below the mean 75
    assert harmonic_mean([42.0]) == 42.0
    assert harmonic_mean([0.0, 90.0]) == 0.0  # the limit: one task at zero sinks the score
    assert math.isnan(harmonic_mean([]))
    assert math.isnan(harmonic_mean([math.nan, 50.0]))
    with pytest.raises(ValueError, match=">= 0"):
        harmonic_mean([-1.0, 50.0])


def test_delta_is_base_minus_current_of_the_harmonic_means():
    assert linguistic_delta([80.0, 40.0], [60.0, 40.0]) == pytest.approx(160 / 3 - 48)  # H 53.33 -> 48
    assert linguistic_delta([50.0], [70.0]) == pytest.approx(-20.0)  # better than the base: negative


# Columns: 0 instruct, 1 vqa (the order), 2-3 two NLU tasks, 4 an NLG task.
BASE = [10.0, 20.0, 80.0, 40.0, 60.0]
ROWS = [[60.0, 15.0, 60.0, 40.0, 50.0], [30.0, 90.0, 40.0, 20.0, 30.0]]
BY_HAND = {
    "vl_score_stage1": 60.0,  # H(60): instruct only
    "vl_score_stage2": 45.0,  # H(30, 90) = 2 / (1/30 + 1/90)
    "nlu_delta_stage1": 160 / 3 - 48.0,  # H(80, 40) = 53.33 - H(60, 40) = 48
    "nlu_delta_stage2": 160 / 3 - 80 / 3,  # - H(40, 20) = 26.67
    "nlg_delta_stage1": 10.0,  # 60 - 50
    "nlg_delta_stage2": 30.0,  # 60 - 30
}


def test_summary_by_hand():
    summary = linguistic_summary(ROWS, BASE, [[0], [0, 1]], {"nlu": [2, 3], "nlg": [4]}, [1, 2])
    expected = {**BY_HAND, "vl_score": 45.0, "nlu_delta": 80 / 3, "nlg_delta": 30.0}
    assert summary == pytest.approx(expected)


def test_a_measure_without_tasks_is_left_out():
    summary = linguistic_summary(ROWS, BASE, [[0], [0, 1]], {"nlu": [], "nlg": [4]}, [1, 2])
    assert not any(key.startswith("nlu") for key in summary) and summary["nlg_delta"] == 30.0


# --- through aggregate_run, on the suites of params.yaml ---


def scores_file(path, values: dict[str, float], suite) -> str:
    write_json(
        path,
        {
            task: {
                "family": suite.tasks[task].family,
                "modality": suite.tasks[task].modality,
                "n": 8,
                "primary": "accuracy",
                "metrics": {"accuracy": value},
            }
            for task, value in values.items()
        },
    )
    return path


LLAVA = ("instruct", "vqa", "ocr", "ref", "text_nlu", "text_nlg")
LLAVA_BASE = [0.0, 10.0, 5.0, 10.0, 80.0, 60.0]
LLAVA_STAGES = [
    [90.0, 10.0, 5.0, 10.0, 70.0, 40.0],
    [50.0, 80.0, 5.0, 10.0, 75.0, 30.0],
    [40.0, 60.0, 90.0, 10.0, 60.0, 30.0],
    [40.0, 60.0, 30.0, 60.0, 50.0, 20.0],
]


@pytest.fixture
def llava_scores(params_file, tmp_path):
    params = load_params(params_file())
    suite = params.suites["llava-synth"]
    base = scores_file(tmp_path / "base.json", dict(zip(LLAVA, LLAVA_BASE, strict=True)), suite)
    stages = [
        scores_file(tmp_path / f"s{k}.json", dict(zip(LLAVA, row, strict=True)), suite)
        for k, row in enumerate(LLAVA_STAGES)
    ]
    return params, base, stages


def test_run_metrics_of_a_llava_synth_run(llava_scores):
    params, base, stages = llava_scores
    run = aggregate_run(
        params, suite="llava-synth", order="ivor", backbone="tiny", method="finetune", seed=0,
        stage_scores=stages, zeroshot_scores=base,
    )  # fmt: skip
    metrics = run["metrics"]
    assert metrics["vl_score"] == pytest.approx(4 / (1 / 40 + 1 / 60 + 1 / 30 + 1 / 60))  # 43.64
    assert metrics["nlu_delta"] == pytest.approx(30.0)  # one NLU task: 80 - 50
    assert metrics["nlg_delta"] == pytest.approx(40.0)  # 60 - 20
    assert metrics["vl_score_stage1"] == 90.0 and metrics["vl_score_stage2"] == pytest.approx(2 / (1 / 50 + 1 / 80))
    assert [metrics[f"nlg_delta_stage{k}"] for k in (1, 2, 3, 4)] == pytest.approx([20.0, 30.0, 30.0, 40.0])
    # The run file names each measure's tasks, from which reports take the base model's own scores.
    assert run["measures"] == {"vl": ["instruct", "vqa", "ocr", "ref"], "nlu": ["text_nlu"], "nlg": ["text_nlg"]}
    parsed = parse_run(run, "run.json")
    assert parsed.base_measures == {"vl": 0.0, "nlu": 80.0, "nlg": 60.0}  # the base scores 0 on instruct
    # and summary.csv carries them like every run-level metric
    summary = summary_frame([parsed]).set_index("metric")
    assert summary.loc["nlg_delta", "mean"] == pytest.approx(40.0)
    assert summary.loc["vl_score_stage2", "n_seeds"] == 1


def test_a_joint_run_has_only_its_final_stage(llava_scores):
    params, base, stages = llava_scores
    run = aggregate_run(
        params, suite="llava-synth", order="ivor", backbone="tiny", method="joint", seed=0,
        stage_scores=stages[-1:], zeroshot_scores=base,
    )  # fmt: skip
    staged = sorted(key for key in run["metrics"] if "_stage" in key)
    assert staged == ["nlg_delta_stage4", "nlu_delta_stage4", "vl_score_stage4"]
    assert run["metrics"]["vl_score"] == run["metrics"]["vl_score_stage4"]


def test_aggregated_runs_make_the_study_report(llava_scores, tmp_path):
    params, base, stages = llava_scores
    files = []
    for method, scores in (("finetune", stages), ("joint", stages[-1:])):
        run = aggregate_run(
            params, suite="llava-synth", order="ivor", backbone="tiny", method=method, seed=0,
            stage_scores=scores, zeroshot_scores=base,
        )  # fmt: skip
        write_json(tmp_path / f"{method}.json", run)
        files.append(tmp_path / f"{method}.json")
    build_reports(files, tmp_path / "reports", method_order=["finetune", "joint"])
    text = (tmp_path / "reports/llava-synth/ivor/tiny/linguistic.md").read_text()
    rows = {
        cells[0]: cells[1:]
        for cells in ([c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines() if line.startswith("|"))
    }
    vl = f"{4 / (1 / 40 + 1 / 60 + 1 / 30 + 1 / 60):.1f}"  # both end on the last stage's scores
    assert rows["finetune"] == rows["joint"] == [vl, "30.0", "40.0"]
    assert rows["base model (scores, not Δ)"] == ["0.0", "80.0", "60.0"]  # H(0, 10, 5, 10) = 0
    assert (tmp_path / "reports/llava-synth/ivor/nlg_delta_by_backbone.png").is_file()


def test_suites_without_nlu_or_nlg_tasks_get_no_linguistic_metrics(params_file, tmp_path):
    params = load_params(params_file())
    suite = params.suites["micl-synth"]
    scores = {task: 50.0 for task in suite.tasks}
    base = scores_file(tmp_path / "base.json", scores, suite)
    stages = [scores_file(tmp_path / f"s{k}.json", scores, suite) for k in range(6)]
    run = aggregate_run(
        params, suite="micl-synth", order="img-aud-vid", backbone="tiny", method="finetune", seed=0,
        stage_scores=stages, zeroshot_scores=base,
    )  # fmt: skip
    assert not [key for key in run["metrics"] if key.startswith(("vl_score", "nlu", "nlg"))]
    assert "measures" not in run and not parse_run(run, "run.json").measures


# --- a real backbone: NLU and NLG from lm-evaluation-harness (`mmcl lm-eval`), beside each evaluation ---

LM_BASE = {"wsc273": 60.0, "winogrande": 50.0, "arc_easy": 60.0, "arc_challenge": 30.0, "lambada_standard": 40.0}
LM_LAST = LM_BASE | {"arc_easy": 40.0, "lambada_standard": 25.0}  # after the last stage; unchanged before


def test_a_real_backbones_run_measures_nlu_and_nlg_with_lm_eval(params_file, tmp_path):
    params = load_params(params_file())
    suite = params.suites["llava-synth"]
    lm_eval = params.backbones["llava-pythia-160m"].lm_eval

    def evaluation(name: str, row: list[float], lm: dict[str, float]):
        scores = scores_file(tmp_path / name / "eval" / "scores.json", dict(zip(LLAVA, row, strict=True)), suite)
        tasks = {
            task: {"family": "lm_eval", "modality": "text", "measure": measure, "n": 10, "primary": "accuracy"}
            | {"metrics": {"accuracy": lm[task]}}
            for task, measure in lm_eval.tasks().items()
        }
        write_json(lm_eval_beside(scores), {"tasks": tasks})
        return scores

    base = evaluation("base", LLAVA_BASE, LM_BASE)
    stages = [evaluation(f"s{k}", row, LM_LAST if k == 3 else LM_BASE) for k, row in enumerate(LLAVA_STAGES)]
    run = aggregate_run(
        params, suite="llava-synth", order="ivor", backbone="llava-pythia-160m", method="finetune", seed=0,
        stage_scores=stages, zeroshot_scores=base,
    )  # fmt: skip
    assert run["eval_tasks"] == [*LLAVA, *LM_BASE], "lm-eval tasks are columns after the suite's"
    assert run["matrix"]["accuracy"][3][run["eval_tasks"].index("arc_easy")] == 40.0
    metrics = run["metrics"]
    # NLU: H(60, 50, 60, 30) = 46.15 -> H(60, 50, 40, 30) = 42.11; NLG: lambada 40 -> 25. The suite's own
    # text tasks (text_nlu 80 -> 50) are columns too, but no longer the measures.
    h_base, h_last = 4 / (1 / 60 + 1 / 50 + 1 / 60 + 1 / 30), 4 / (1 / 60 + 1 / 50 + 1 / 40 + 1 / 30)
    assert metrics["nlu_delta"] == pytest.approx(h_base - h_last)
    assert metrics["nlg_delta"] == pytest.approx(15.0)
    assert [metrics[f"nlg_delta_stage{k}"] for k in (1, 2, 3)] == [0.0, 0.0, 0.0]
    assert metrics["vl_score"] == pytest.approx(4 / (1 / 40 + 1 / 60 + 1 / 30 + 1 / 60)), "VL tasks as before"
    assert run["measures"] == {"vl": list(LLAVA[:4]), "nlu": list(lm_eval.nlu), "nlg": list(lm_eval.nlg)}
