"""build_reports: tidy CSVs, seed summaries, tables (md/csv/tex), heatmaps, curves, metrics.json."""

from __future__ import annotations

import csv
import json
import math
import statistics
import struct
from pathlib import Path

import pytest

from mmcl.jobs.report import build_reports

SUITE, ORDER, BACKBONE = "micl-synth", "img-aud", "tiny"
TASKS = ["image_cap", "image_qa", "audio_qa"]
EVAL_TASKS = [*TASKS, "text_qa"]
FAMILIES = {"image_cap": "captioning", "image_qa": "qa", "audio_qa": "qa", "text_qa": "qa"}
PRIMARY = {"image_cap": "cider", "image_qa": "accuracy", "audio_qa": "accuracy", "text_qa": "accuracy"}
# Per-run offset: every score of a run is derived from it, so expected numbers can be computed by hand.
BASES = {("finetune", 0): 40.0, ("finetune", 1): 50.0, ("lwf", 0): 60.0, ("lwf", 1): 62.0}
BASELINE = {
    "image_cap": {
        "family": "captioning",
        "n": 10,
        "primary": "cider",
        "metrics": {"cider": 3.0, "bleu4": 1.0},
    },
    "image_qa": {"family": "qa", "n": 10, "primary": "accuracy", "metrics": {"accuracy": 25.0}},
    "audio_qa": {"family": "qa", "n": 10, "primary": "accuracy", "metrics": {"accuracy": 50.0}},
    "text_qa": {"family": "qa", "n": 10, "primary": "accuracy", "metrics": {"accuracy": 30.0}},
}
GROUP = Path(SUITE, ORDER, BACKBONE)


def qa_score(base: float, stage: int, task_index: int) -> float:
    """A QA task scores 10 before it is trained, base + 10 per stage since it was trained after."""
    return base + 10 * (stage - task_index) if stage >= task_index else 10.0


def sequential_run(method: str, seed: int) -> dict:
    base = BASES[(method, seed)]
    accuracy, cider, bleu4 = [], [], []
    for stage in range(len(TASKS)):
        accuracy.append([None, qa_score(base, stage, 1), qa_score(base, stage, 2), 60.0 - 5 * stage])
        cider.append([base + 5 * stage, None, None, None])
        bleu4.append([base / 10, None, None, None])
    return {
        "suite": SUITE,
        "order": ORDER,
        "backbone": BACKBONE,
        "method": method,
        "seed": seed,
        "fingerprint": "f" * 16,
        "commit": "c" * 40,
        "tasks": TASKS,
        "eval_tasks": EVAL_TASKS,
        "families": FAMILIES,
        "primary_metric": PRIMARY,
        "stages": TASKS,
        "matrix": {"accuracy": accuracy, "cider": cider, "bleu4": bleu4},
        "zeroshot": {"accuracy": [None, 10.0, 10.0, 60.0], "cider": [1.0, None, None, None]},
        "metrics": {
            "last_acc": base + 5,
            "avg_acc": base,
            "forgetting_acc": 100 - base,
            "bwt_acc": base - 100,
            "fwt_acc": 0.0,
            "learn_acc": base + 20,
            "last_cider": base + 10,
            "avg_cider": base + 5,
            "forgetting_cider": None,
            "bwt_cider": None,
            "fwt_cider": None,
            "learn_cider": base,
        },
    }


def joint_run() -> dict:
    run = sequential_run("finetune", 0)
    run["method"] = "joint"
    run["stages"] = ["joint"]
    run["matrix"] = {
        "accuracy": [[None, 90.0, 85.0, 40.0]],
        "cider": [[70.0, None, None, None]],
        "bleu4": [[None, None, None, None]],
    }
    run["metrics"] = {name: None for name in run["metrics"]} | {"last_acc": 87.5, "last_cider": 70.0}
    return run


def all_runs() -> list[dict]:
    return [sequential_run(method, seed) for method, seed in BASES] + [joint_run()]


def write_runs(directory: Path, runs: list[dict]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for run in runs:
        path = directory / f"{run['backbone']}_{run['method']}_seed{run['seed']}.json"
        path.write_text(json.dumps(run))
        paths.append(path)
    return paths


def write_inputs(directory: Path) -> tuple[list[Path], dict[str, Path]]:
    paths = write_runs(directory, all_runs())
    baseline = directory / "baseline.json"
    baseline.write_text(json.dumps(BASELINE))
    return paths, {SUITE: baseline}


def interval(values: list[float]) -> str:
    """``mean [low, high]``: the 95% Student t interval of the seed mean, as the tables print it."""
    from scipy.stats import t

    mean = statistics.mean(values)
    half = t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{mean:.1f} [{mean - half:.1f}, {mean + half:.1f}]".replace("-0.0", "0.0")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def table_rows(markdown: str) -> dict[str, list[str]]:
    """Markdown table body rows, keyed by their first cell."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and not set(cells[0]) <= set(":-"):
            rows[cells[0]] = cells[1:]
    return rows


METHOD_ORDER = ["finetune", "lwf", "joint"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[list[Path], dict[str, Path]]:
    return write_inputs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory) -> tuple[Path, dict]:
    run_files, baselines = inputs
    out = tmp_path_factory.mktemp("reports")
    return out, build_reports(run_files, out, method_order=METHOD_ORDER, baselines=baselines, compare_with="finetune")


def test_results_csv_has_one_row_per_defined_cell(built):
    out, _ = built
    rows = read_csv(out / "results.csv")
    expected = sum(
        value is not None for run in all_runs() for matrix in run["matrix"].values() for row in matrix for value in row
    )
    assert len(rows) == expected
    assert list(rows[0]) == [
        "suite",
        "order",
        "backbone",
        "method",
        "seed",
        "stage",
        "stage_task",
        "task",
        "metric",
        "value",
        "fingerprint",
        "commit",
    ]
    assert {(r["fingerprint"], r["commit"]) for r in rows} == {("f" * 16, "c" * 40)}, "each row names its run's"
    cell = [
        r
        for r in rows
        if (r["method"], r["seed"], r["stage"], r["task"], r["metric"]) == ("lwf", "1", "2", "image_qa", "accuracy")
    ]
    assert len(cell) == 1
    assert cell[0]["stage_task"] == "image_qa"
    assert float(cell[0]["value"]) == 62.0  # base 62, trained at stage 2 -> base + 0


def test_joint_cells_sit_at_the_last_stage(built):
    out, _ = built
    joint = [r for r in read_csv(out / "results.csv") if r["method"] == "joint"]
    assert {(r["stage"], r["stage_task"]) for r in joint} == {("3", "joint")}
    assert len(joint) == 4  # 3 accuracy + 1 cider; the all-null bleu4 row is skipped


def test_summary_mean_and_std_over_seeds(built):
    out, _ = built
    summary = {(r["method"], r["metric"]): r for r in read_csv(out / "summary.csv")}
    last_acc = summary[("finetune", "last_acc")]
    assert float(last_acc["mean"]) == pytest.approx(50.0)  # (45 + 55) / 2
    assert float(last_acc["std"]) == pytest.approx(math.sqrt(50.0), abs=1e-6)  # ddof=1
    assert last_acc["n_seeds"] == "2"
    # 95% Student t interval: 50 ± t(0.975, 1) · sqrt(50) / sqrt(2) = 50 ± 12.7062 · 5
    assert (float(last_acc["ci_low"]), float(last_acc["ci_high"])) == pytest.approx((-13.531, 113.531), abs=1e-3)
    assert last_acc["interval"] == "t over seeds"
    lwf_learn = summary[("lwf", "learn_acc")]
    assert (float(lwf_learn["mean"]), float(lwf_learn["std"])) == pytest.approx((81.0, math.sqrt(2.0)), abs=1e-6)
    # One seed: std is left empty; undefined metrics have no mean and count no seeds.
    assert (summary[("joint", "last_acc")]["mean"], summary[("joint", "last_acc")]["std"]) == ("87.5", "")
    assert summary[("joint", "forgetting_acc")]["mean"] == ""
    assert summary[("joint", "forgetting_acc")]["n_seeds"] == "0"
    # 12 run-level metrics per method, and the forgetting reduction of each method but finetune
    assert len(summary) == 3 * 12 + 2 and ("finetune", "forgetting_reduction_pct") not in summary


def test_forgetting_reduction_relative_to_finetune():
    from types import SimpleNamespace

    from mmcl.analyses.tidy import forgetting_reduction

    def runs(*values):
        return [SimpleNamespace(metrics={"forgetting": v}) for v in values]

    # finetune forgets 40 on average over seeds, the method 10: 75% less
    assert forgetting_reduction(runs(8.0, 12.0), runs(30.0, 50.0)) == pytest.approx(75.0)
    assert forgetting_reduction(runs(60.0), runs(40.0)) == pytest.approx(-50.0)  # forgets more
    assert math.isnan(forgetting_reduction(runs(5.0), runs(0.0)))  # nothing to reduce


def test_markdown_table(built):
    out, _ = built
    text = (out / GROUP / "table.md").read_text()
    assert text.startswith("# micl-synth · order img-aud · backbone tiny")
    assert "image_cap → image_qa → audio_qa" in text
    rows = table_rows(text)
    header = rows["Method"]
    assert header[:4] == ["image_cap (CIDEr)", "image_qa (Acc)", "audio_qa (Acc)", "text_qa† (Acc)"]
    assert header[4:] == [
        "Avg CIDEr",
        "Avg Acc",
        "Forgetting Acc",
        "BWT Acc",
        "Learned Acc",
    ]  # CIDEr forgetting/BWT: undefined in every row, so dropped
    column = dict(zip(header, rows["finetune"], strict=True))
    assert column["image_cap (CIDEr)"] == interval([50, 60]) == "55.0 [-8.5, 118.5]"  # final CIDEr 50, 60
    assert column["image_qa (Acc)"] == interval([50, 60])
    assert column["Avg Acc"] == interval([45, 55])  # the baseline itself: no mark
    # lwf against finetune, paired by seed: forgetting 40 vs 60 and 38 vs 50, p = 0.16 -> "≈"
    assert dict(zip(header, rows["lwf"], strict=True))["Forgetting Acc"] == interval([40, 38]) + " ≈"
    assert "paired t-test against finetune" in text
    joint = dict(zip(header, rows["joint"], strict=True))
    assert (joint["Avg Acc"], joint["Forgetting Acc"], joint["BWT Acc"]) == ("87.5", "–", "–")
    reference = dict(zip(header, rows["most common (reference)"], strict=True))
    assert reference["image_qa (Acc)"] == "25.0"
    assert reference["text_qa† (Acc)"] == "30.0"
    assert reference["Avg Acc"] == "37.5"  # mean of the order's QA tasks (25, 50); text_qa is not one
    assert reference["Avg CIDEr"] == "3.0"
    assert reference["Forgetting Acc"] == "–"
    assert "not in the training sequence" in text
    assert text.rstrip().splitlines()[-1].startswith("- **most common (reference)**")


def test_table_csv_has_mean_std_interval_and_p_value_columns(built):
    from scipy.stats import ttest_rel

    out, _ = built
    rows = {r["method"]: r for r in read_csv(out / GROUP / "table.csv")}
    assert list(rows) == ["finetune", "lwf", "joint", "most common (reference)"]
    assert float(rows["finetune"]["image_qa (Acc) mean"]) == 55.0
    assert float(rows["finetune"]["image_qa (Acc) std"]) == pytest.approx(7.0711)
    assert float(rows["finetune"]["image_qa (Acc) ci_high"]) == pytest.approx(55 + 12.7062 * 5, abs=1e-3)
    assert rows["finetune"]["image_qa (Acc) interval"] == "t over seeds"
    # Avg Acc: lwf 65, 67 against finetune 45, 55, paired by seed
    assert float(rows["lwf"]["Avg Acc p vs finetune"]) == pytest.approx(ttest_rel([65, 67], [45, 55]).pvalue, abs=1e-4)
    assert rows["finetune"]["Avg Acc p vs finetune"] == rows["joint"]["Avg Acc p vs finetune"] == ""
    assert "image_qa (Acc) p vs finetune" not in rows["lwf"], "only the summary columns are tested"
    assert rows["joint"]["Forgetting Acc mean"] == ""
    assert rows["most common (reference)"]["n_seeds"] == ""


def test_latex_is_booktabs_with_escaped_names(built):
    out, _ = built
    tex = (out / GROUP / "table.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "image\\_cap (CIDEr)" in tex
    assert "text\\_qa$^\\dagger$" in tex
    assert "55.0 [-8.5, 118.5]" in tex and "$\\approx$" in tex
    assert "most common (reference)" in tex
    body = tex.replace("\\_", "")
    assert "_" not in body


def test_heatmaps_are_valid_pngs(built):
    out, _ = built
    heatmaps = sorted(p.name for p in (out / GROUP / "heatmaps").iterdir())
    assert heatmaps == [
        "finetune_seed0.png",
        "finetune_seed1.png",
        "joint_seed0.png",
        "lwf_seed0.png",
        "lwf_seed1.png",
    ]
    for name in heatmaps:
        data = (out / GROUP / "heatmaps" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])  # IHDR
        assert width > 200 and height > 150
        assert len(data) > 10_000


def test_curves_average_the_tasks_seen_so_far(built):
    out, _ = built
    assert sorted(p.name for p in (out / GROUP / "curves").iterdir()) == ["finetune.csv", "lwf.csv"]
    rows = read_csv(out / GROUP / "curves" / "finetune.csv")
    assert [(r["stage"], r["stage_task"]) for r in rows] == [
        ("1", "image_cap"),
        ("2", "image_qa"),
        ("3", "audio_qa"),
    ]
    assert rows[0]["avg_acc_seen"] == ""  # no QA task trained yet
    assert float(rows[0]["avg_cider_seen"]) == 45.0  # seeds 40, 50
    assert float(rows[1]["avg_acc_seen"]) == 45.0  # image_qa just learned: base
    # Stage 3: seed 0 (image_qa 50 + audio_qa 40) / 2 = 45, seed 1 (60 + 50) / 2 = 55.
    assert float(rows[2]["avg_acc_seen"]) == 50.0


def test_metrics_json_nesting_and_values(built):
    out, returned = built
    written = json.loads((out / "metrics.json").read_text())
    assert written == returned
    methods = written[SUITE][ORDER][BACKBONE]
    assert list(methods) == ["finetune", "lwf", "joint"]
    assert methods["finetune"]["last_acc"] == pytest.approx(50.0)
    assert methods["lwf"]["last_cider"] == pytest.approx(71.0)
    assert methods["joint"]["forgetting_acc"] is None
    assert methods["finetune"]["bwt_cider"] is None


def test_index_links_every_table(built):
    out, _ = built
    index = (out / "index.md").read_text()
    for name in ("table.md", "table.csv", "table.tex"):
        link = f"]({GROUP.as_posix()}/{name})"
        assert link in index
        assert (out / GROUP / name).is_file()


def test_build_is_deterministic(built, inputs, tmp_path):
    first, _ = built
    run_files, baselines = inputs
    build_reports(
        list(reversed(run_files)), tmp_path, method_order=METHOD_ORDER, baselines=baselines, compare_with="finetune"
    )
    files = sorted(p.relative_to(first) for p in first.rglob("*.*"))
    assert (
        len(files) == 15
    )  # results, summary, metrics, environment, index + table.{md,csv,tex} + 2 curves + 5 heatmaps
    for rel in files:
        assert (first / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_duplicate_runs_are_rejected(tmp_path):
    run_files, _ = write_inputs(tmp_path / "runs")
    copy = tmp_path / "copy.json"
    copy.write_text(run_files[0].read_text())
    with pytest.raises(ValueError, match="same run"):
        build_reports([*run_files, copy], tmp_path / "out")


def test_matrix_shape_is_checked(tmp_path):
    run = sequential_run("finetune", 0)
    run["matrix"]["accuracy"] = run["matrix"]["accuracy"][:2]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(run))
    with pytest.raises(ValueError, match="stages × eval_tasks"):
        build_reports([path], tmp_path / "out")


def test_groups_method_order_and_single_seed_tables(tmp_path):
    run_files, _ = write_inputs(tmp_path / "runs")
    other_file = tmp_path / "runs" / "small.json"
    other_file.write_text(json.dumps(sequential_run("finetune", 0) | {"backbone": "small"}))
    stale = tmp_path / "out" / SUITE / ORDER / "small" / "heatmaps" / "removed_seed9.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")

    metrics = build_reports([*run_files, other_file], tmp_path / "out", method_order=["lwf", "absent"])

    # Listed methods first, the others alphabetically; no baseline given, so no reference row.
    assert list(metrics[SUITE][ORDER][BACKBONE]) == ["lwf", "finetune", "joint"]
    rows = list(table_rows((tmp_path / "out" / GROUP / "table.md").read_text()))
    assert rows == ["Method", "lwf", "finetune", "joint"]
    small = tmp_path / "out" / SUITE / ORDER / "small"
    assert not stale.exists()  # a group directory is rebuilt as a whole
    assert [p.name for p in (small / "heatmaps").iterdir()] == ["finetune_seed0.png"]
    text = (small / "table.md").read_text()
    assert text.splitlines()[0] == "# micl-synth · order img-aud · backbone small · 1 seed"
    assert table_rows(text)["finetune"][:2] == ["50.0", "50.0"]  # one seed: plain values, no "±"
    assert list(read_csv(small / "table.csv")[0])[:3] == ["method", "n_seeds", "image_cap (CIDEr) mean"]
    index = (tmp_path / "out" / "index.md").read_text()
    assert f"{SUITE}/{ORDER}/small/table.md" in index and f"{GROUP.as_posix()}/table.md" in index


# --- Suites with linguistic measures (the continual-LLaVA study): two backbones, two methods, two seeds ---

L_SUITE, L_ORDER = "llava-synth", "ivor"
L_TASKS = ["instruct", "vqa"]
L_BACKBONES = ["tiny-s", "tiny-m"]  # the grid's (size) order; alphabetically the other way round
L_METHODS = ["finetune", "msgm"]
# How much a run forgets (points of NLG after the last stage); every number of the run derives from it.
L_FORGET = {
    ("tiny-s", "finetune", 0): 10.0,
    ("tiny-s", "finetune", 1): 14.0,
    ("tiny-s", "msgm", 0): 4.0,
    ("tiny-s", "msgm", 1): 7.0,
    ("tiny-m", "finetune", 0): 6.0,
    ("tiny-m", "finetune", 1): 9.0,
    ("tiny-m", "msgm", 0): 1.0,
    ("tiny-m", "msgm", 1): -2.0,
}
L_BASE = {"vl": 10.0, "nlu": 60.0, "nlg": 50.0}  # the base model: 10 on both VL tasks


def linguistic_values(f: float, stage: int) -> dict[str, float]:
    """A run's VL score and deltas after 1-based ``stage``: VL 80 - 10 per later stage - f, Δ growing to f."""
    return {"vl_score": 90.0 - 10 * stage - f, "nlu_delta": f / 4 * stage, "nlg_delta": f / 2 * stage}


def linguistic_run(backbone: str, method: str, seed: int) -> dict:
    f = L_FORGET[(backbone, method, seed)]
    metrics = {}
    accuracy = []
    for stage in (1, 2):
        values = linguistic_values(f, stage)
        metrics |= {f"{name}_stage{stage}": value for name, value in values.items()}
        vl = values["vl_score"]  # both VL tasks score it once trained, so their harmonic mean is it too
        nlu, nlg = L_BASE["nlu"] - values["nlu_delta"], L_BASE["nlg"] - values["nlg_delta"]
        accuracy.append([vl, vl if stage == 2 else 10.0, nlu, nlg])
    metrics |= linguistic_values(f, 2) | {"last_acc": accuracy[-1][0], "forgetting": 0.0}
    return {
        "suite": L_SUITE,
        "order": L_ORDER,
        "backbone": backbone,
        "method": method,
        "seed": seed,
        "tasks": L_TASKS,
        "eval_tasks": [*L_TASKS, "text_nlu", "text_nlg"],
        "families": {"instruct": "qa", "vqa": "qa", "text_nlu": "multiple_choice", "text_nlg": "last_word"},
        "primary_metric": dict.fromkeys([*L_TASKS, "text_nlu", "text_nlg"], "accuracy"),
        "stages": L_TASKS,
        "matrix": {"accuracy": accuracy},
        "zeroshot": {"accuracy": [10.0, 10.0, L_BASE["nlu"], L_BASE["nlg"]]},
        "metrics": metrics,
        "measures": {"vl": L_TASKS, "nlu": ["text_nlu"], "nlg": ["text_nlg"]},
    }


def linguistic_runs() -> list[dict]:
    return [linguistic_run(*key) for key in L_FORGET]


def by_hand(backbone: str, method: str, name: str, stage: int = 2) -> str:
    """The mean and interval over the two seeds, as the table prints it."""
    return interval([linguistic_values(L_FORGET[(backbone, method, seed)], stage)[name] for seed in (0, 1)])


@pytest.fixture(scope="module")
def linguistic_files(tmp_path_factory) -> list[Path]:
    return write_runs(tmp_path_factory.mktemp("llava-runs"), linguistic_runs())


@pytest.fixture(scope="module")
def linguistic_built(linguistic_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("llava-reports")
    build_reports(linguistic_files, out, method_order=L_METHODS, backbone_order=L_BACKBONES)
    return out


def test_linguistic_table_per_backbone(linguistic_built):
    for backbone in L_BACKBONES:
        text = (linguistic_built / L_SUITE / L_ORDER / backbone / "linguistic.md").read_text()
        assert text.startswith(f"# Linguistic forgetting · llava-synth · order ivor · backbone {backbone} · 2 seeds")
        rows = table_rows(text)
        assert rows["Method"] == ["VL score", "NLU Δ", "NLG Δ"]
        assert list(rows) == ["Method", *L_METHODS, "base model (scores, not Δ)"]
        for method in L_METHODS:
            expected = [by_hand(backbone, method, name) for name in ("vl_score", "nlu_delta", "nlg_delta")]
            assert rows[method] == expected, (backbone, method)
        assert rows["base model (scores, not Δ)"] == ["10.0", "60.0", "50.0"]
        assert "positive = forgetting" in text
    # e.g. tiny-m msgm: NLG Δ 1 and -2 -> -0.5 (it got better on average), std 2.1
    assert by_hand("tiny-m", "msgm", "nlg_delta") == "-0.5 [-19.6, 18.6]"


def test_linguistic_csv_and_latex(linguistic_built):
    directory = linguistic_built / L_SUITE / L_ORDER / "tiny-s"
    rows = {r["method"]: r for r in read_csv(directory / "linguistic.csv")}
    assert float(rows["finetune"]["NLG Δ mean"]) == 12.0  # seeds 10, 14
    assert float(rows["finetune"]["NLG Δ std"]) == pytest.approx(math.sqrt(8), abs=1e-4)
    assert float(rows["base model (scores, not Δ)"]["NLU Δ mean"]) == 60.0
    tex = (directory / "linguistic.tex").read_text()
    assert "\\label{tab:llava-synth-ivor-tiny-s-linguistic}" in tex
    assert (
        "Linguistic forgetting: suite llava-synth" in tex and "& VL score & NLU $\\Delta$ & NLG $\\Delta$ \\\\" in tex
    )


def test_linguistic_figures_and_index(linguistic_built):
    order_dir = linguistic_built / L_SUITE / L_ORDER
    figures = [order_dir / "nlg_delta_by_backbone.png"] + [order_dir / b / "linguistic_stages.png" for b in L_BACKBONES]
    for figure in figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    index = (linguistic_built / "index.md").read_text()
    assert "## Linguistic forgetting" in index
    for backbone in L_BACKBONES:
        for name in ("linguistic.md", "linguistic.csv", "linguistic.tex", "linguistic_stages.png"):
            assert f"]({L_SUITE}/{L_ORDER}/{backbone}/{name})" in index
    assert f"]({L_SUITE}/{L_ORDER}/nlg_delta_by_backbone.png)" in index


def test_summary_csv_has_the_linguistic_metrics(linguistic_built):
    summary = {
        (r["suite"], r["backbone"], r["method"], r["metric"]): r for r in read_csv(linguistic_built / "summary.csv")
    }
    row = summary[(L_SUITE, "tiny-s", "finetune", "nlg_delta")]
    assert (float(row["mean"]), float(row["std"]), row["n_seeds"]) == (12.0, pytest.approx(math.sqrt(8)), "2")
    assert float(summary[(L_SUITE, "tiny-m", "msgm", "vl_score")]["mean"]) == 70.5  # 70 - 1, 70 + 2
    assert float(summary[(L_SUITE, "tiny-s", "msgm", "nlu_delta_stage1")]["mean"]) == 1.375  # (1 + 1.75) / 2


def test_nlg_by_backbone_follows_the_grid_order(linguistic_files):
    from mmcl.analyses.linguistic.figures import nlg_by_backbone_figure
    from mmcl.analyses.runs import load_runs

    runs = load_runs(linguistic_files)
    ax = nlg_by_backbone_figure(runs, L_BACKBONES, L_METHODS).axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == L_BACKBONES
    lines = {container.get_label(): container.lines[0] for container in ax.containers}
    assert list(lines) == L_METHODS
    assert list(lines["finetune"].get_ydata()) == [12.0, 7.5]  # tiny-s: 10, 14; tiny-m: 6, 9
    # One backbone: a single x position, still drawn.
    single = nlg_by_backbone_figure([run for run in runs if run.backbone == "tiny-m"], ["tiny-m"], L_METHODS)
    assert [label.get_text() for label in single.axes[0].get_xticklabels()] == ["tiny-m"]
    assert list(single.axes[0].containers[1].lines[0].get_ydata()) == [-0.5]


def test_stage_curves_are_seed_means_per_stage(linguistic_files):
    from mmcl.analyses.linguistic.figures import stage_curves_figure
    from mmcl.analyses.runs import load_runs, parse_run

    # A joint run (values after the last stage only), first in the list: the x axis is still the stages.
    joint = linguistic_run("tiny-s", "finetune", 0) | {"method": "joint", "stages": ["joint"]}
    joint["matrix"] = {"accuracy": joint["matrix"]["accuracy"][-1:]}
    joint["metrics"] = {name: value for name, value in joint["metrics"].items() if not name.endswith("_stage1")}
    runs = [parse_run(joint, "joint.json")] + [run for run in load_runs(linguistic_files) if run.backbone == "tiny-s"]
    axes = stage_curves_figure(runs, [*L_METHODS, "joint"]).axes
    assert [ax.get_title() for ax in axes] == ["VL score", "NLU Δ", "NLG Δ"]
    nlg = {
        line.get_label(): list(line.get_ydata()) for line in axes[2].get_lines() if not line.get_label().startswith("_")
    }
    # f/2 after stage 1, f after stage 2
    assert nlg == {"finetune": [6.0, 12.0], "msgm": [2.75, 5.5], "joint": [pytest.approx(math.nan, nan_ok=True), 10.0]}
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["1: instruct", "2: vqa"]


def test_linguistic_build_is_deterministic(linguistic_built, linguistic_files, tmp_path):
    build_reports(list(reversed(linguistic_files)), tmp_path, method_order=L_METHODS, backbone_order=L_BACKBONES)
    files = sorted(p.relative_to(linguistic_built) for p in linguistic_built.rglob("*.*"))
    assert len(files) == 5 + 2 * (3 + 4 + 2 + 3 + 1) + 1  # top-level 5; per backbone table, 4 heatmaps,
    # 2 curves, linguistic table, stage figure; one NLG Δ-by-backbone figure
    for rel in files:
        assert (linguistic_built / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_suites_without_linguistic_measures_or_generation_get_neither_report(built):
    out, _ = built
    assert not [p for p in out.rglob("*") if "linguistic" in p.name or "nlg" in p.name or "generat" in p.name]
    assert "Linguistic" not in (out / "index.md").read_text()
    assert "inter-modal" not in (out / "index.md").read_text()


# --- MoDE's setting: understanding tasks in the order, a generation task outside it ---

G_SUITE, G_ORDER, G_BACKBONE = "mode-synth", "coin", "unified"
G_TASKS = ["reason", "read"]
G_METHODS = ["lora", "mode"]
# (method, seed) -> (final accuracy on reason/read, gen score after, trainable parameters)
G_RUNS = {
    ("lora", 0): (40.0, 20.0, 16_384),
    ("lora", 1): (50.0, 30.0, 16_384),
    ("mode", 0): (44.0, 70.0, 40_960),
    ("mode", 1): (46.0, 74.0, 40_960),
}
G_BEFORE = 77.0  # the stage-0 model's gen score, shared by every run
PROMPTS = {f"draw-{i}": f"red circle {place}" for i, place in enumerate(["top left", "top right", "bottom left"])}


def write_evaluation(directory: Path, right: int) -> Path:
    """An evaluation directory with a picture per prompt, the first ``right`` of them read as asked."""
    from PIL import Image

    (directory / "generated" / "draw").mkdir(parents=True)
    (directory / "predictions").mkdir()
    rows = []
    for i, (sample_id, answer) in enumerate(PROMPTS.items()):
        Image.new("RGB", (48, 48), (40 * i, 200, 90)).save(directory / "generated" / "draw" / f"{sample_id}.png")
        rows.append({"id": sample_id, "prediction": answer if i < right else "blue square centre", "answers": [answer]})
    (directory / "predictions" / "draw.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return directory


def generation_run(root: Path, method: str, seed: int) -> dict:
    final, gen_after, trainable = G_RUNS[(method, seed)]
    accuracy = [[final + 40, 10.0, gen_after + 5], [final, final, gen_after]]
    return {
        "suite": G_SUITE,
        "order": G_ORDER,
        "backbone": G_BACKBONE,
        "method": method,
        "seed": seed,
        "tasks": G_TASKS,
        "eval_tasks": [*G_TASKS, "draw"],
        "families": {"reason": "qa", "read": "qa", "draw": "generation"},
        "primary_metric": {"reason": "accuracy", "read": "accuracy", "draw": "gen_score"},
        "stages": G_TASKS,
        "matrix": {
            "accuracy": [[*row[:2], None] for row in accuracy],
            "gen_score": [[None, None, r[2]] for r in accuracy],
        },
        "zeroshot": {"accuracy": [5.0, 5.0, None], "gen_score": [None, None, G_BEFORE]},
        "metrics": {
            "last_acc": final,
            "forgetting_acc": 40.0,
            "gen_before": G_BEFORE,
            "gen_after": gen_after,
            "inter_forgetting": G_BEFORE - gen_after,
            "trainable_params": trainable,
        },
        "generated": {
            "stage0": str(root / "stage0"),
            "final": str(write_evaluation(root / f"{method}{seed}", right=1 if method == "lora" else 3)),
        },
    }


@pytest.fixture(scope="module")
def generation_built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mode-runs")
    write_evaluation(root / "stage0", right=3)
    files = write_runs(root, [generation_run(root, *key) for key in G_RUNS])
    out = tmp_path_factory.mktemp("mode-reports")
    build_reports(files, out, method_order=G_METHODS)
    return out / G_SUITE / G_ORDER / G_BACKBONE


def test_generation_table_shows_both_kinds_of_forgetting(generation_built):
    text = (generation_built / "generation.md").read_text()
    assert text.startswith("# Intra- and inter-modal forgetting · mode-synth · order coin · backbone unified · 2 seeds")
    rows = table_rows(text)
    assert rows["Method"] == [
        "reason (Acc)",
        "read (Acc)",
        "Mean Acc",
        "Gen before",
        "Gen after",
        "Intra-modal forgetting",
        "Inter-modal forgetting",
        "Trainable params (K)",
    ]
    # lora: reason 40, 50; gen after 20, 30 -> inter-modal forgetting 57, 47
    assert rows["lora"] == [interval([40, 50])] * 3 + [
        "77.0 [77.0, 77.0]", interval([20, 30]), "40.0 [40.0, 40.0]", interval([57, 47]), "16.4"
    ]  # fmt: skip
    assert rows["mode"][4:] == [interval([70, 74]), "40.0 [40.0, 40.0]", interval([7, 3]), "41.0"]
    assert rows["stage-0 model"] == ["–", "–", "–", "77.0", "–", "–", "–", "–"]
    assert "Gen before − Gen after" in text
    csv_rows = {r["method"]: r for r in read_csv(generation_built / "generation.csv")}
    assert float(csv_rows["mode"]["Inter-modal forgetting mean"]) == 5.0
    assert "\\label{tab:mode-synth-coin-unified-generation}" in (generation_built / "generation.tex").read_text()


def test_generated_images_grid_has_a_row_per_method_and_the_stage0_model(generation_built, tmp_path):
    data = (generation_built / "generated.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert (width, height) == (round(100 * (1.3 * len(PROMPTS) + 1.6)), round(100 * (1.55 * 3 + 0.8)))
    index = (generation_built.parents[2] / "index.md").read_text()
    assert "## Intra- and inter-modal forgetting" in index
    for name in ("generation.md", "generation.csv", "generation.tex", "generated.png"):
        assert f"]({G_SUITE}/{G_ORDER}/{G_BACKBONE}/{name})" in index
