"""The contract's suites, models and runs, shared by test_contract.py (every plugin) and test_distributed.py
(every method on two processes); conftest's ``contract`` fixture builds it once per session."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from mmcl.core import paths
from mmcl.core.plan import plan_stages
from mmcl.data.families import generation_tasks
from mmcl.methods import METHODS
from mmcl.models.backbones import BACKBONES

ORDER = "contract"
SEED = 0


@dataclass(frozen=True)
class Setting:
    """A suite, its two-task order and the backbone every method and family is tried on there."""

    suite: str
    backbone: str
    order: tuple[str, str]


SETTINGS = (
    Setting("micl-synth", "tiny", ("image_cap", "image_qa")),  # a type change in one modality (PTGM)
    Setting("llava-synth", "tiny-s", ("vqa", "ocr")),  # linguistic measures, after the alignment stage
    Setting("mode-synth", "unified", ("classify", "compose")),  # images as tokens, generation outside the order
)


def contract_params(default: dict) -> dict:
    """params.yaml at the size of a unit test: a few samples, two or three steps of everything."""
    params = copy.deepcopy(default)
    params["presets"] = {}
    for setting in SETTINGS:
        suite = params["suites"][setting.suite]
        # enough of mode-synth's drawings for the judge to see every colour, shape and place of its test split
        suite["sizes"] = {"train": 60 if setting.suite == "mode-synth" else 24, "test": 4, "pretrain": 16}
        suite["orders"][ORDER] = list(setting.order)
        if suite.get("alignment"):
            suite["alignment"].update(steps=2, batch_size=4)
    for name in ("tiny", "tiny-s"):
        params["backbones"][name]["encoder_pretraining"] = {"steps": {"image": 3, "audio": 3}, "batch_size": 8}
        params["backbones"][name]["stage0"] = {"steps": 3, "batch_size": 8, "lr": 3.0e-3}
    params["backbones"]["unified"]["tokenizer"].update(steps=5, batch_size=16)
    params["backbones"]["unified"]["stage0"] = {"steps": 3, "batch_size": 8, "lr": 3.0e-3}
    params["judge"].update(steps=5, batch_size=16)
    params["train"].update(steps=2, task_steps={}, batch_size=4, log_every=1, checkpoint_every=0)
    params["evaluation"].update(max_samples=4, batch_size=16)
    params["methods"]["ewc"].update(fisher_samples=4)
    return params


def quiet(_: str) -> None:
    pass


@dataclass
class Contract:
    """The suites prepared, their artifacts and base models built, and the runs made so far (by method)."""

    root: Path
    params: object
    runs: dict[tuple[str, str], dict] = field(default_factory=dict)  # (setting's backbone, method) -> run

    def path(self, relative: str) -> Path:
        return self.root / relative

    def start(self, setting: Setting) -> Path:
        aligned = self.params.suites[setting.suite].alignment is not None
        return self.path(paths.start_model(setting.suite, setting.backbone, aligned))

    def judge(self, setting: Setting) -> Path:
        return self.path(paths.judge_dir(setting.suite))

    def features(self, setting: Setting) -> Path | None:
        """The backbone's feature cache, where the workflow would make one (`feature_inputs`)."""
        config = self.params.backbones[setting.backbone]
        cached = config.feature_cache and config.freeze_encoders
        return self.path(paths.feature_cache(setting.suite, setting.backbone)) if cached else None


def build_contract(root: Path, default: dict) -> Contract:
    """Prepare the settings' suites under ``root``, build their artifacts and start models and score the base
    models and the most-common references (conftest's ``contract`` fixture, once per session)."""
    from mmcl.jobs.align import align
    from mmcl.jobs.encode_media import encode_suite_media
    from mmcl.jobs.evaluate import evaluate, evaluate_reference
    from mmcl.jobs.image_artifacts import build_image_tokenizer, build_judge
    from mmcl.jobs.params import load_params
    from mmcl.jobs.prepare import prepare
    from mmcl.jobs.train_base import artifacts_of, train_base

    (root / "params.yaml").write_text(yaml.safe_dump(contract_params(default), sort_keys=False))
    params = load_params(root / "params.yaml")
    ctx = Contract(root, params)
    for setting in SETTINGS:
        suite, backbone = setting.suite, setting.backbone
        data = ctx.path(paths.suite_dir(suite))
        prepare(params, suite, data, log=quiet)
        config = params.backbones[backbone]
        if "image_tokenizer" in BACKBONES.get(config.family)(config).required_artifacts():
            build_image_tokenizer(
                params, suite, backbone, data, ctx.path(paths.image_tokenizer_dir(suite, backbone)), quiet
            )
        if generation_tasks(params.suites[suite]):
            build_judge(params, suite, data, ctx.judge(setting), quiet)
        artifacts = {name: root / path for name, path in artifacts_of(params, suite, backbone, {}).items()}
        base = ctx.path(paths.base_checkpoint(suite, backbone))
        train_base(params, suite, backbone, data, base, log=quiet, artifacts=artifacts)
        if features := ctx.features(setting):
            encode_suite_media(params, suite, backbone, data, base, features, log=quiet)
        if params.suites[suite].alignment is not None:
            align(params, suite, backbone, data, base, ctx.start(setting), features, log=quiet)
        judge = ctx.judge(setting)
        scores = ctx.path(paths.base_scores(suite, backbone)).parent
        evaluate(params, suite=suite, method=None, data_dir=data, base_dir=base, checkpoint=None, out_dir=scores,
                 log=quiet, judge_dir=judge, features_dir=features)  # fmt: skip
        evaluate_reference(params, suite=suite, data_dir=data, out_dir=ctx.path(paths.reference_scores(suite)).parent,
                           log=quiet)  # fmt: skip
    return ctx


def setting_for(ctx: Contract, method: str) -> Setting:
    """The first setting whose suite and model the method can train."""
    from mmcl.models.checkpoint import load_base

    config = ctx.params.methods[method]
    cl_method = METHODS.get(config.type)(config)
    for setting in SETTINGS:
        if cl_method.suite_problem(ctx.params.suites[setting.suite]) is None:
            model, _ = load_base(ctx.start(setting))
            if cl_method.model_problem(model) is None:
                return setting
    pytest.fail(f"method '{method}' can train none of the contract's settings: {SETTINGS}")


def run_method(ctx: Contract, method: str, setting: Setting) -> dict:
    """Train, evaluate and aggregate one run of ``method`` on ``setting`` (once per session)."""
    from mmcl.jobs.aggregate import aggregate_run
    from mmcl.jobs.evaluate import evaluate
    from mmcl.jobs.replay import build_replay
    from mmcl.jobs.stage import StageJob
    from mmcl.jobs.teach import teach_stage
    from mmcl.jobs.train_stage import train_stage

    key = (setting.backbone, method)
    if key in ctx.runs:
        return ctx.runs[key]
    params, suite, backbone = ctx.params, setting.suite, setting.backbone
    data = ctx.path(paths.suite_dir(suite))
    cl_method = METHODS.get(params.methods[method].type)(params.methods[method])
    scores, checkpoints, previous = [], [], None
    for stage in plan_stages(cl_method.schedule, list(setting.order)):
        job = StageJob(
            suite, backbone, method, SEED, stage.key, data, ctx.start(setting), previous, ctx.features(setting)
        )
        artifacts = {}
        for name in cl_method.required_artifacts(stage):
            out = ctx.path(paths.stage_artifact(name, suite, backbone, method, SEED, stage.key))
            if name == "teacher":
                teach_stage(params, job, out, log=quiet)
            elif name == "replay":
                build_replay(params, method, SEED, stage.key, data, out, log=quiet)
            else:
                pytest.fail(f"method '{method}' asks for an artifact no job of the workflow makes: {name}")
            artifacts[name] = out
        previous = ctx.path(paths.stage_checkpoint(suite, backbone, method, SEED, stage.key))
        train_stage(params, job, previous, artifacts, log=quiet)
        stage_scores = ctx.path(paths.stage_scores(suite, backbone, method, SEED, stage.key))
        evaluate(params, suite=suite, method=method, data_dir=data, base_dir=ctx.start(setting), checkpoint=previous,
                 out_dir=stage_scores.parent, log=quiet, judge_dir=ctx.judge(setting),
                 features_dir=ctx.features(setting))  # fmt: skip
        scores.append(stage_scores)
        checkpoints.append(previous)
    run = aggregate_run(params, suite=suite, order=ORDER, backbone=backbone, method=method, seed=SEED,
                        stage_scores=scores, zeroshot_scores=ctx.path(paths.base_scores(suite, backbone)))  # fmt: skip
    ctx.runs[key] = {"run": run, "checkpoints": checkpoints, "setting": setting}
    return ctx.runs[key]
