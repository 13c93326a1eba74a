"""One contract every registered plugin meets, the way peft runs every tuner through one test table.

Three small suites stand for the three studies: micl-synth on the tiny backbone, llava-synth on tiny-s
(with its alignment stage) and mode-synth on the embedded unified backbone. Each plugin is found in the
registries, so a new method, backbone family, task family or analysis is covered without touching this
file:

- a **method** trains two stages of a two-task order (as many as its schedule has) on the first suite
  whose model it can train, each from the previous one's saved checkpoint with the artifacts it asks for
  (teacher, replay); every checkpoint reloads into a fresh model and is evaluated; the run aggregates;
- a **backbone family** is assembled, trained at stage 0, saved and reloaded, and a finetune run on it
  aggregates;
- a **task family** scores its gold answers above a wrong answer under each of its scorers, and its
  training target is one of a sample's answers;
- an **analysis** applies to some group of the runs above and every file its index section links exists.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import batch_of, save_tiny_clip, save_tiny_llm, save_tiny_whisper, with_backbone
from contract_kit import ORDER, SEED, SETTINGS, Contract, Setting, quiet, run_method, setting_for

from mmcl.analyses import ANALYSES
from mmcl.config.schema import GridConfig
from mmcl.core import paths
from mmcl.core.registry import ConfigError
from mmcl.data import TASK_FAMILIES
from mmcl.data.records import Sample, read_jsonl, split_path
from mmcl.methods import METHODS
from mmcl.models.backbones import BACKBONES

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains_two_stages_that_reload_evaluate_and_aggregate(contract, method):
    import torch

    from mmcl.core.io import read_json
    from mmcl.models.checkpoint import StageSwap, load_base, load_stage

    setting = setting_for(contract, method)
    result = run_method(contract, method, setting)
    run, checkpoints = result["run"], result["checkpoints"]
    config = contract.params.methods[method]
    schedule = METHODS.get(config.type).schedule
    assert len(checkpoints) == {"sequential": 2, "joint": 1, "none": 0}[schedule]
    start, processor = load_base(contract.start(setting))
    METHODS.get(config.type)(config).prepare_model(start)
    before, base_keys, compared = start.state_dict(), set(load_base(contract.start(setting))[0].state_dict()), 0
    for checkpoint in checkpoints:
        meta = read_json(paths.stage_meta(checkpoint))
        assert meta["trainable_parameters"] > 0 and all(math.isfinite(loss) for loss in meta["losses"]), meta
        reloaded, _ = load_base(contract.start(setting))
        METHODS.get(config.type)(config).prepare_model(reloaded)
        keys, _ = load_stage(checkpoint, reloaded)
        after = {k: v.clone() for k, v in reloaded.state_dict().items()}
        # What training moved, measured from where the stage started: the previous checkpoint's tensors
        # (all of them) or, for the first stage, the base model's (adapters it adds start at random).
        comparable = [k for k in keys if k in before and (checkpoint != checkpoints[0] or k in base_keys)]
        if comparable:
            assert any(not torch.equal(before[k], after[k]) for k in comparable), f"{checkpoint}: nothing moved"
            compared += 1
        before = after
    assert compared or not checkpoints, f"{method}: no stage could be compared with where it started"
    shaping = METHODS.get(config.type)(config)
    if checkpoints and shaping.merged_weights(start):  # evaluation merges its deltas: that changes no prediction
        swap = StageSwap(start.eval(), shaping)
        assert swap.load(checkpoints[-1])
        data = contract.path(paths.suite_dir(setting.suite))
        batch = batch_of(reloaded, processor, contract.params, data, setting.order[0], suite=setting.suite)
        torch.testing.assert_close(start(**batch).logits, reloaded.eval()(**batch).logits, atol=1e-4, rtol=1e-4)
    rows = len(checkpoints) if schedule != "none" else len(setting.order)
    for metric, matrix in run["matrix"].items():
        assert len(matrix) == rows and all(len(row) == len(run["eval_tasks"]) for row in matrix), metric
    assert run["eval_tasks"][:2] == list(setting.order)
    forgetting = run["metrics"]["forgetting"]
    assert math.isfinite(forgetting) if schedule == "sequential" else math.isnan(forgetting)


# How a backbone family is built here without a download: the first params.yaml entry of the family on the
# first setting its grid accepts, except `hf`, whose entries name hub models: tiny ones saved locally stand in.
def local_hf(ctx: Contract, setting: Setting) -> str:
    parts = ctx.root / "hf-parts"
    if not parts.exists():
        tokenizer = ctx.path(paths.suite_dir(setting.suite)) / "tokenizer"
        save_tiny_llm("llama", tokenizer, parts / "llm")
        save_tiny_clip(parts / "clip")
        save_tiny_whisper(parts / "whisper")
    ctx.params = with_backbone(
        ctx.params, "hf-local", "micl-pythia-160m", llm=parts / "llm", image_encoder=parts / "clip",
        audio_encoder=parts / "whisper",
    )  # fmt: skip
    return "hf-local"


LOCAL = {"hf": local_hf}


def backbone_setting(ctx: Contract, family: str) -> Setting:
    from mmcl.jobs.params import check_grid

    for setting in SETTINGS:
        if ctx.params.backbones[setting.backbone].family == family:
            return setting
    for setting in SETTINGS:
        name = LOCAL[family](ctx, setting) if family in LOCAL else None
        name = name or next((n for n, b in ctx.params.backbones.items() if b.family == family), None)
        if name is None:
            pytest.fail(f"backbone family '{family}' has no entry in params.yaml to build")
        try:
            grid = GridConfig(setting.suite, [ORDER], ["finetune"], [name], [SEED])
            check_grid(ctx.params, grid, "contract", "test_contract.py")
        except ConfigError:
            continue
        return Setting(setting.suite, name, setting.order)
    pytest.fail(f"backbone family '{family}' fits none of the contract's settings")


@pytest.mark.parametrize("family", BACKBONES.names())
def test_every_backbone_family_assembles_saves_reloads_and_trains(contract, family):
    from mmcl.jobs.encode_media import encode_suite_media
    from mmcl.jobs.evaluate import evaluate
    from mmcl.jobs.train_base import artifacts_of, train_base
    from mmcl.models.checkpoint import load_base

    setting = backbone_setting(contract, family)
    base = contract.start(setting)
    if not base.exists():
        suite, backbone, params = setting.suite, setting.backbone, contract.params
        artifacts = {k: contract.root / v for k, v in artifacts_of(params, suite, backbone, {}).items()}
        data = contract.path(paths.suite_dir(suite))
        train_base(params, suite, backbone, data, base, log=quiet, artifacts=artifacts)
        if features := contract.features(setting):
            encode_suite_media(params, suite, backbone, data, base, features, log=quiet)
        scores = contract.path(paths.base_scores(suite, backbone)).parent
        evaluate(params, suite=suite, method=None, data_dir=data, base_dir=base, checkpoint=None, out_dir=scores,
                 log=quiet, features_dir=features)  # fmt: skip
    model, processor = load_base(base)
    assert model.num_media_tokens and processor is not None
    run = run_method(contract, "finetune", setting)["run"]
    assert run["backbone"] == setting.backbone and math.isfinite(run["metrics"]["forgetting"])


def family_samples(ctx: Contract, family: str) -> list[Sample]:
    """Test samples of a task of ``family`` in the contract's suites, or text samples made for it."""
    for setting in SETTINGS:
        for task, config in ctx.params.suites[setting.suite].tasks.items():
            if config.family == family:
                return read_jsonl(split_path(ctx.path(paths.suite_dir(setting.suite)), task, "test"))
    words = ("red", "green", "blue", "square")
    return [Sample(f"s{i}", "t", "text", "what ?", [words[i]], options=list(words)) for i in range(len(words))]


@pytest.mark.parametrize("family", TASK_FAMILIES.names())
def test_every_task_family_scores_gold_answers_above_wrong_ones(contract, family):
    import random

    samples = family_samples(contract, family)
    implementation = TASK_FAMILIES.get(family)
    assert implementation.prediction in ("generate", "likelihood", "generate_image")
    if implementation.summary is not None:
        assert implementation.summary.metric in implementation.metrics
    references = {s.id: s.answers for s in samples}
    for scorer in implementation.scorers or (None,):
        scoring = implementation(scorer)
        assert scoring.target(samples[0], random.Random(0)) in samples[0].answers
        gold = scoring.score({"t": ({s.id: s.answers[0] for s in samples}, references)})["t"]
        wrong = scoring.score({"t": ({s.id: "zzz" for s in samples}, references)})["t"]
        assert scoring.primary in gold and set(gold) == set(implementation.metrics)
        assert gold[scoring.primary] >= wrong[scoring.primary]
        if scorer == scoring.metric and scorer == (implementation.scorers or (None,))[0]:
            assert gold[scoring.primary] > wrong[scoring.primary], f"{family}: the default scorer cannot tell"


# Files an analysis's report reads, made by the job the workflow runs for them.
def gradient_file(ctx: Contract, relative: str) -> None:
    from mmcl.jobs.gradients import gradient_diagnostic
    from mmcl.jobs.stage import StageJob

    _, suite, backbone, method, seed, _, stage = Path(relative).with_suffix("").parts
    result = ctx.runs[(backbone, method)]
    data, start = ctx.path(paths.suite_dir(suite)), ctx.start(result["setting"])
    seed_number = int(seed.removeprefix("seed"))
    job = StageJob(suite, backbone, method, seed_number, stage, data, start, None, ctx.features(result["setting"]))
    gradient_diagnostic(ctx.params, job, result["checkpoints"][-1], ctx.path(relative), batch_size=4, log=quiet)


MAKERS = {"gradients": gradient_file}


@pytest.fixture(scope="session")
def contract_report(contract):
    """Every method's run on its setting, aggregated and reported with every analysis's inputs: the
    report's directory and its context (what the report was given)."""
    from mmcl.analyses.base import ReportContext
    from mmcl.core.io import read_json, write_json
    from mmcl.jobs.report import build_reports

    for method in METHODS.names():
        run_method(contract, method, setting_for(contract, method))
    for setting in SETTINGS:  # every setting's analyses get runs: the baseline's, where no method ran
        if all(s is not setting for s in (r["setting"] for r in contract.runs.values())):
            run_method(contract, "finetune", setting)
    run_files = []
    for (backbone, method), result in contract.runs.items():
        path = contract.path(paths.run_file(result["setting"].suite, backbone, method, SEED, ORDER))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, result["run"])
        run_files.append(path)
    inputs: dict[str, list[Path]] = {}
    for setting in SETTINGS:
        methods = [m for (b, m) in contract.runs if b == setting.backbone]
        grid = GridConfig(setting.suite, [ORDER], methods, [setting.backbone], [SEED])
        for name in ANALYSES.names():
            for relative in ANALYSES.get(name)().report_inputs(contract.params, grid):
                if name not in MAKERS:
                    pytest.fail(f"analysis '{name}' reads {relative}: say in MAKERS which job makes it")
                MAKERS[name](contract, relative)
                inputs.setdefault(name, []).append(contract.path(relative))
    out = contract.root / "reports"
    baselines = {s.suite: contract.path(paths.reference_scores(s.suite)) for s in SETTINGS}
    build_reports(run_files, out, method_order=METHODS.names(), baselines=baselines, inputs=inputs)
    context = ReportContext(
        methods=METHODS.names(), baselines={s: read_json(p) for s, p in baselines.items()}, inputs=inputs
    )
    return out, run_files, context


@pytest.mark.parametrize("analysis", ANALYSES.names())
def test_every_analysis_reports_on_some_group_and_its_links_resolve(contract_report, analysis, tmp_path):
    import re

    from mmcl.analyses.runs import group_runs, load_runs

    out, run_files, context = contract_report
    groups = group_runs(load_runs(run_files))
    implementation = ANALYSES.get(analysis)()
    applied = [group for group, members in groups.items() if implementation.applies(members)]
    written = implementation.write_report(tmp_path, groups, context)
    assert applied or written, f"analysis '{analysis}' applies to no group of the contract's runs"
    section = implementation.index_section(applied, written)
    links = re.findall(r"\]\(([^)]+)\)", "\n".join(section))
    assert links, f"analysis '{analysis}': its index section links nothing"
    assert "\n".join(section) in (out / "index.md").read_text()
    for link in links:
        assert (out / link).is_file(), f"{analysis}'s index section links {link}, which the report did not write"
