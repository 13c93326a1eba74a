"""``mmcl`` command line: the steps the workflow's rules call, each runnable by hand.

Argument parsing only: each command's work is its module under ``mmcl.jobs``, imported when it runs
(so that ``mmcl --help`` imports no torch). Every command reads ``params.yaml`` (``--params``), validates
it, and writes its outputs atomically with a ``provenance.json`` (resolved config, package versions, git
commit) beside them.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from mmcl.core.registry import ConfigError


def _params(args):
    from mmcl.jobs.params import load_params

    return load_params(args.params)


def _artifacts(args, command: str) -> dict[str, Path]:
    artifacts = {}
    for item in args.artifact:
        name, sep, path = item.partition("=")
        if not (sep and name and path):
            raise ConfigError(f"{command}: --artifact {item!r}: expected NAME=DIR, e.g. replay=results/.../replay")
        artifacts[name] = Path(path)
    return artifacts


def _pairs(items: list[str], flag: str, example: str) -> list[tuple[str, str]]:
    """``NAME=VALUE`` arguments as pairs."""
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not (sep and name and value):
            raise ConfigError(f"{flag} {item!r}: expected NAME=VALUE, e.g. {example}")
        pairs.append((name, value))
    return pairs


def cmd_validate_config(args) -> None:
    from mmcl.jobs.cost import check_memory
    from mmcl.jobs.params import load_params
    from mmcl.jobs.validate import summarise

    params = load_params(args.params, preset=args.preset)
    summarise(params, f"preset {args.preset}" if args.preset else "grid")
    check_memory(params)  # only where resources name a GPU's memory (gpu_mem_gb)


def cmd_plan(args) -> None:
    from mmcl.jobs.cost import print_plan
    from mmcl.jobs.params import load_params

    print_plan(
        load_params(args.params, preset=args.preset), f"preset {args.preset}" if args.preset else "grid", args.gpu
    )


def cmd_prepare(args) -> None:
    from mmcl.jobs.prepare import prepare

    prepare(_params(args), args.suite, args.out)


def cmd_download(args) -> None:
    from mmcl.jobs.datasets import obtain

    obtain(_params(args), args.dataset, args.file, args.out)


def cmd_extract(args) -> None:
    from mmcl.jobs.datasets import unpack

    unpack(_params(args), args.dataset, args.file, args.archive, args.out)


def cmd_convert(args) -> None:
    from mmcl.jobs.datasets import convert

    convert(_params(args), args.dataset, args.sources, args.out)


def cmd_train_base(args) -> None:
    from mmcl.jobs.train_base import artifacts_of, train_base

    params = _params(args)
    artifacts = artifacts_of(params, args.suite, args.backbone, _artifacts(args, "train-base"))
    train_base(params, args.suite, args.backbone, Path(args.data), Path(args.out), artifacts=artifacts)


def cmd_train_tokenizer(args) -> None:
    from mmcl.jobs.image_artifacts import build_image_tokenizer

    build_image_tokenizer(_params(args), args.suite, args.backbone, Path(args.data), Path(args.out))


def cmd_train_judge(args) -> None:
    from mmcl.jobs.image_artifacts import build_judge

    build_judge(_params(args), args.suite, Path(args.data), Path(args.out))


def cmd_align(args) -> None:
    from mmcl.jobs.align import align

    features = Path(args.features) if args.features else None
    align(_params(args), args.suite, args.backbone, Path(args.data), Path(args.base), Path(args.out), features)


def cmd_encode_media(args) -> None:
    from mmcl.jobs.encode_media import encode_suite_media

    encode_suite_media(_params(args), args.suite, args.backbone, Path(args.data), Path(args.base), Path(args.out))


def _stage_job(args):
    from mmcl.jobs.stage import StageJob

    return StageJob(
        suite=args.suite,
        backbone=args.backbone,
        method=args.method,
        seed=args.seed,
        stage_key=args.stage,
        data_dir=Path(args.data),
        base_dir=Path(args.base),
        prev_dir=Path(args.prev) if getattr(args, "prev", None) else None,  # `gradients` has no --prev
        features_dir=Path(args.features) if args.features else None,
    )


def cmd_train_stage(args) -> None:
    from mmcl.jobs.train_stage import train_stage

    train_stage(_params(args), _stage_job(args), Path(args.out), _artifacts(args, "train-stage"))


def cmd_teach(args) -> None:
    from mmcl.jobs.teach import teach_stage

    teach_stage(_params(args), _stage_job(args), Path(args.out))


def cmd_replay(args) -> None:
    from mmcl.jobs.replay import build_replay

    build_replay(_params(args), args.method, args.seed, args.stage, Path(args.data), Path(args.out))


def cmd_evaluate(args) -> None:
    from mmcl.core import paths
    from mmcl.jobs.evaluate import evaluate, evaluate_reference

    params = _params(args)
    if args.reference:
        evaluate_reference(params, suite=args.suite, data_dir=Path(args.data), out_dir=Path(args.out))
        return
    if not args.base:
        raise ConfigError("evaluate: --base is required (or --reference for the most-common baseline)")
    evaluate(
        params,
        suite=args.suite,
        method=args.method,
        data_dir=Path(args.data),
        base_dir=Path(args.base),
        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
        out_dir=Path(args.out),
        judge_dir=Path(args.judge or paths.judge_dir(args.suite)),
        features_dir=Path(args.features) if args.features else None,
        tasks=args.tasks,
    )


def cmd_predict(args) -> None:
    from mmcl.core import paths
    from mmcl.core.io import write_json
    from mmcl.jobs.evaluate import Target, predict_targets

    params, base = _params(args), Path(args.base)
    targets = []
    for entry in args.target:
        directory, _, tasks = entry.partition("=")
        checkpoint = None if Path(directory) == base else Path(directory)
        if checkpoint is not None and not args.method:
            raise ConfigError(f"predict: --target {directory}: a stage checkpoint needs the --method that trained it")
        targets.append(Target(checkpoint, paths.eval_beside(directory), tuple(tasks.split(","))))
    generated = predict_targets(
        params,
        suite=args.suite,
        method=args.method,
        data_dir=Path(args.data),
        base_dir=base,
        targets=targets,
        judge_dir=Path(args.judge or paths.judge_dir(args.suite)),
        features_dir=Path(args.features) if args.features else None,
    )
    summary = {str(t.out_dir): {"tasks": list(t.tasks), "generated": generated[t.out_dir]} for t in targets}
    write_json(Path(args.out), summary)


def cmd_rescore(args) -> None:
    from mmcl.jobs.scoring import rescore

    rescore(_params(args), suite=args.suite, data_dir=Path(args.data), out_dir=Path(args.eval_dir), tasks=args.tasks)


def cmd_gradients(args) -> None:
    from mmcl.jobs.gradients import gradient_diagnostic

    gradient_diagnostic(_params(args), _stage_job(args), Path(args.checkpoint), Path(args.out), args.batch_size)


def cmd_lm_eval(args) -> None:
    from mmcl.jobs.lm_eval import lm_evaluate

    if args.checkpoint and not args.method:
        raise ConfigError("lm-eval: --method is required with --checkpoint (it shapes the model, e.g. LoRA)")
    lm_evaluate(
        _params(args),
        backbone=args.backbone,
        method=args.method,
        base_dir=Path(args.base),
        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
        out_dir=Path(args.out),
    )


def cmd_aggregate(args) -> None:
    from mmcl.jobs.aggregate import write_run

    write_run(
        _params(args),
        Path(args.out),
        suite=args.suite,
        order=args.order,
        backbone=args.backbone,
        method=args.method,
        seed=args.seed,
        stage_scores=[Path(p) for p in args.stage_scores],
        zeroshot_scores=Path(args.zeroshot_scores),
    )


def cmd_report(args) -> None:
    from mmcl.jobs.params import load_params
    from mmcl.jobs.report import build_reports

    params = load_params(args.params, preset=args.preset)
    inputs: dict[str, list[Path]] = {}
    for name, path in _pairs(args.input, "--input", "gradients=results/.../gradients/<stage>.json"):
        inputs.setdefault(name, []).append(Path(path))
    build_reports(
        [Path(p) for p in args.runs],
        Path(args.out),
        method_order=params.grid.methods,
        baselines={suite: Path(path) for suite, path in _pairs(args.reference, "--reference", "micl-synth=...")},
        backbone_order=params.grid.backbones,
        inputs=inputs,
        compare_with=params.grid.compare_with,
    )
    print(f"report written to {args.out}/index.md")


def cmd_compare(args) -> None:
    from mmcl.jobs.compare import compare_command

    sys.exit(0 if compare_command(args.a, args.b, args.against) else 1)


def artifact_flag(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--artifact", action="append", default=[], metavar="NAME=DIR", help=help_text)


DATA = ("--data", "the suite's data directory")
OUT = ("--out", "directory to write")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmcl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help_text: str, required: tuple = ()) -> argparse.ArgumentParser:
        """A command with --params and the ``required`` flags, each a name or (name, help); the others are
        added to what it returns."""
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--params", default="params.yaml", help="experiment config (default: params.yaml)")
        for flag in required:
            name, flag_help = (flag, None) if isinstance(flag, str) else flag
            p.add_argument(name, required=True, help=flag_help)
        p.set_defaults(func=func)
        return p

    def features_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--features", help="feature cache (`mmcl encode-media`) to read instead of decoding media")

    def judge_flag(p: argparse.ArgumentParser) -> None:
        default = "default: where the workflow builds it"
        p.add_argument("--judge", help=f"judge of generated images (`mmcl train-judge`; {default})")

    p = command("validate-config", cmd_validate_config, "Check params.yaml and summarise the grid it declares.")
    p.add_argument("--preset", help="summarise the grid of presets.<PRESET> (a paper table) instead")

    plan_help = "Estimate each kind of job's peak GPU memory and GPU-hours; fail where one exceeds gpu_mem_gb."
    p = command("plan", cmd_plan, plan_help)
    p.add_argument("--preset", help="plan the grid of presets.<PRESET> (a paper table) instead")
    p.add_argument("--gpu", help="the GPU to assume for every job (a100, h100, h200; default: gpu_type, else a100)")

    p = command(
        "prepare", cmd_prepare, "Generate or convert a suite's data into the common JSONL format.", ("--suite",)
    )
    p.add_argument("--out", required=True, type=Path, help="data directory of the suite, e.g. data/micl-synth")

    p = command(
        "download",
        cmd_download,
        "Download one file of a real dataset (or check the one placed by hand).",
        ("--dataset",),
    )
    p.add_argument("--file", required=True, help="its name under datasets.<dataset>.files")
    p.add_argument("--out", required=True, type=Path, help="where it goes, e.g. downloads/<dataset>/<file>")

    p = command("extract", cmd_extract, "Unpack one downloaded archive of a real dataset.", ("--dataset",))
    p.add_argument("--file", required=True, help="its name under datasets.<dataset>.files")
    p.add_argument("--archive", required=True, type=Path, help="the downloaded archive")
    p.add_argument("--out", required=True, type=Path, help="directory to unpack into")

    p = command("convert", cmd_convert, "Convert a real dataset's files into the common JSONL format.", ("--dataset",))
    p.add_argument("--sources", required=True, type=Path, help="its downloads, e.g. downloads/<dataset>")
    p.add_argument("--out", required=True, type=Path, help="data directory of the dataset, e.g. data/<dataset>")

    p = command(
        "train-base",
        cmd_train_base,
        "Build a backbone's stage-0 base model (pretrain random encoders on tags, train its LLM on text).",
        ("--suite", "--backbone", DATA, ("--out", "base model directory to write")),
    )
    artifact_flag(
        p,
        "an artifact the backbone is assembled from (repeatable): image_tokenizer (`mmcl train-tokenizer`; "
        "default: where the workflow builds it)",
    )

    tokenizer_help = "Train an embedded unified backbone's image tokenizer (a VQ-VAE) on the suite's training images."
    unified = ("--backbone", "a `family: unified` backbone with `model: null`")
    command("train-tokenizer", cmd_train_tokenizer, tokenizer_help, ("--suite", unified, DATA, OUT))
    judge_help = "Train the judge of a suite's generated images on its real training images."
    command("train-judge", cmd_train_judge, judge_help, ("--suite", DATA, OUT))

    p = command(
        "align",
        cmd_align,
        "Run a suite's alignment stage (LLaVA-1.5): train the projector on captions, LLM and encoders frozen.",
        ("--suite", "--backbone", "--data"),
    )
    p.add_argument("--base", required=True, help="base model directory it starts from")
    p.add_argument("--out", required=True, help="aligned model directory to write (a base model directory)")
    features_flag(p)

    encode_help = "Cache the frozen encoders' outputs for every media file of a suite (read instead of decoding)."
    p = command("encode-media", cmd_encode_media, encode_help, ("--suite", "--backbone", "--data"))
    p.add_argument("--base", required=True, help="base model directory whose encoders run")
    p.add_argument("--out", required=True, help="feature cache directory to write")

    def stage_command(name: str, func, help_text: str, flags: tuple[str, ...]) -> argparse.ArgumentParser:
        """A command about one stage of a run: ``flags`` (required) plus --seed and --stage."""
        p = command(name, func, help_text, flags)
        p.add_argument("--seed", required=True, type=int)
        p.add_argument("--stage", required=True, help="stage key: the tasks trained so far joined by '+'")
        return p

    def model_stage_command(name: str, func, help_text: str) -> argparse.ArgumentParser:
        """A stage command that loads the stage's starting model."""
        p = stage_command(name, func, help_text, ("--suite", "--backbone", "--method", "--data", "--base", "--out"))
        p.add_argument("--prev", help="previous stage's checkpoint (omit for the first stage)")
        features_flag(p)
        return p

    p = model_stage_command("train-stage", cmd_train_stage, "Train one continual-learning stage from the previous one.")
    artifact_flag(p, "a cached artifact the method reads (repeatable): teacher (`mmcl teach`), replay (`mmcl replay`)")
    teach_help = "Cache the previous model's outputs (pseudo-targets, top-K logits) for a stage."
    model_stage_command("teach", cmd_teach, teach_help)

    replay_help = "Choose a stage's rehearsal buffer: sample ids of the earlier tasks (no model)."
    stage_command("replay", cmd_replay, replay_help, ("--method", "--data", "--out"))

    p = command(
        "evaluate",
        cmd_evaluate,
        "Evaluate a checkpoint (or the base model) on every task of the suite but its alignment task.",
        ("--suite", "--data"),
    )
    p.add_argument("--out", required=True, help="directory for predictions/ and scores.json")
    p.add_argument("--base", help="base model directory")
    p.add_argument("--method", help="method whose checkpoint is evaluated (it shapes the model, e.g. LoRA)")
    p.add_argument("--checkpoint", help="stage checkpoint (omit to evaluate the base model)")
    p.add_argument("--reference", action="store_true", help="score the most-common-training-answer predictor")
    p.add_argument("--tasks", nargs="+", help="the tasks to score (default: every evaluated task of the suite)")
    judge_flag(p)
    features_flag(p)

    p = command(
        "predict",
        cmd_predict,
        "Predict the test samples of checkpoints of one method (or of the base model), loading it once; "
        "resumes from each checkpoint's response store.",
        ("--suite", "--data"),
    )
    p.add_argument("--base", required=True, help="the start model the checkpoints were trained from")
    p.add_argument("--method", help="method whose checkpoints are evaluated (it shapes the model, e.g. LoRA)")
    p.add_argument(
        "--target",
        nargs="+",
        required=True,
        metavar="DIR=TASK,...",
        help="a stage checkpoint (or the --base directory itself) and its tasks; predictions go to <DIR>/../eval/",
    )
    p.add_argument("--out", required=True, help="summary JSON: each target's tasks and how many predictions it made")
    judge_flag(p)
    features_flag(p)

    p = command("rescore", cmd_rescore, "Score an evaluation's stored predictions (no model).", ("--suite", "--data"))
    p.add_argument("--eval-dir", required=True, help="the evaluation directory (predictions/; scores.json goes here)")
    p.add_argument("--tasks", nargs="+", required=True, help="the tasks to score")

    p = stage_command(
        "gradients",
        cmd_gradients,
        "MoDE's Figure 5: per tensor a checkpoint's method trains, the cosine of its text- and image-loss gradients.",
        ("--suite", "--backbone", "--method", "--data", "--base", "--checkpoint", "--out"),
    )
    p.add_argument("--batch-size", type=int, default=16, help="samples of each loss's batch (default: 16)")
    features_flag(p)

    lm_eval_help = "Run the backbone's lm-evaluation-harness tasks on the LLM of a checkpoint (or the base model)."
    p = command("lm-eval", cmd_lm_eval, lm_eval_help)
    p.add_argument("--backbone", required=True, help="backbone whose `lm_eval` settings name the tasks")
    p.add_argument("--base", required=True, help="base model directory")
    p.add_argument("--out", required=True, help="directory for scores.json")
    p.add_argument("--method", help="method whose checkpoint is evaluated (it shapes the model, e.g. LoRA)")
    p.add_argument("--checkpoint", help="stage checkpoint (omit to evaluate the base model)")

    p = command("aggregate", cmd_aggregate, "Build one run's accuracy matrices and CL metrics from its scores.")
    for flag in ("--suite", "--order", "--backbone", "--method", "--zeroshot-scores", "--out"):
        p.add_argument(flag, required=True)
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--stage-scores", nargs="*", default=[], help="scores.json of each stage, in training order")

    p = command("report", cmd_report, "Write tables, heatmaps, results.csv, summary.csv and metrics.json.")
    p.add_argument("--runs", nargs="+", required=True, help="run JSON files from `mmcl aggregate`")
    p.add_argument("--reference", nargs="*", default=[], metavar="SUITE=SCORES", help="most-common baseline scores")
    p.add_argument(
        "--input",
        nargs="*",
        action="extend",  # the rule repeats the flag, once per file
        default=[],
        metavar="ANALYSIS=FILE",
        help="a file an analysis reads, e.g. gradients=<an `mmcl gradients` file> (the report rule lists them)",
    )
    p.add_argument("--out", default="reports")
    p.add_argument("--preset", help="the report of presets.<PRESET>: its methods and backbones order the rows and axes")

    from mmcl.jobs import compare

    p = sub.add_parser(
        "compare",
        help="Did report directory B reproduce A? Every metric with its interval, agreement, and a verdict.",
        description=compare.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", nargs="?", help="report directory A (with --against: the directory, default reports)")
    p.add_argument("b", nargs="?", help="report directory B")
    p.add_argument("--against", metavar="REV", help="compare the directory as committed at git revision REV with it")
    p.set_defaults(func=cmd_compare)
    return parser


def explained(err: Exception) -> bool:
    """Errors whose message already names the file and the fix: printed as one line, no traceback."""
    from mmcl.core.integrity import CheckpointError
    from mmcl.data.records import DataError

    classes = [ConfigError, CheckpointError, DataError]
    # Only look up the class of a module already loaded: importing it would import torch.
    if loop := sys.modules.get("mmcl.engine.loop"):
        classes.append(loop.NonFiniteLoss)
    full_disk = isinstance(err, OSError) and err.errno == errno.ENOSPC
    return full_disk or isinstance(err, tuple(classes))


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except Exception as err:
        if not explained(err):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2 if isinstance(err, ConfigError) else 1)
