# The grid, read and validated from params.yaml, and the input functions that chain stages.
import re

from mmcl.config import load_params
from mmcl.methods import METHODS
from mmcl.plan import plan_stages

PARAMS_FILE = config.get("params", "params.yaml")
PARAMS = load_params(PARAMS_FILE)
GRID = PARAMS.grid
SUITE = GRID.suite


def _names(values):
    return "|".join(re.escape(str(v)) for v in values)


wildcard_constraints:
    suite=_names(PARAMS.suites),
    backbone=_names(PARAMS.backbones),
    method=_names(PARAMS.methods),
    order=_names(PARAMS.suite().orders),
    seed=r"\d+",
    stage=r"[^/]+",


def schedule(method):
    return METHODS.get(PARAMS.methods[method].type).schedule


def stages(method, order):
    return plan_stages(schedule(method), PARAMS.order(order))


def fingerprint(*sections):
    """A param whose value changes when these params.yaml sections do, so Snakemake re-runs the job."""

    def value(wildcards):
        return PARAMS.fingerprint(*(s.format(**wildcards) for s in sections))

    return value


def stage_inputs(wildcards):
    """A stage starts from the base model and, unless it is the first, the previous stage's checkpoint."""
    stage = next(
        s
        for order in PARAMS.suite(wildcards.suite).orders
        for s in stages(wildcards.method, order)
        if s.key == wildcards.stage
    )
    inputs = {
        "data": f"data/{wildcards.suite}/manifest.json",
        "base": f"results/{wildcards.suite}/{wildcards.backbone}/base/checkpoint",
    }
    if stage.previous:
        w = wildcards
        inputs["prev"] = f"results/{w.suite}/{w.backbone}/{w.method}/seed{w.seed}/stages/{stage.previous}/checkpoint"
    return inputs


def previous_flag(wildcards, input):
    return f"--prev {input.prev}" if "prev" in input.keys() else ""


def run_stage_scores(wildcards):
    w = wildcards
    return [
        f"results/{w.suite}/{w.backbone}/{w.method}/seed{w.seed}/stages/{s.key}/eval/scores.json"
        for s in stages(w.method, w.order)
    ]


RUN_FILES = expand(
    "results/{suite}/{backbone}/{method}/seed{seed}/runs/{order}.json",
    suite=SUITE,
    backbone=GRID.backbones,
    method=GRID.methods,
    seed=GRID.seeds,
    order=GRID.orders,
)
REPORT_FILES = ["reports/index.md", "reports/results.csv", "reports/summary.csv", "reports/metrics.json"]
