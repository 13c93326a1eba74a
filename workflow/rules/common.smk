# The grid, read and validated from params.yaml, and the input functions that chain stages. Every path
# comes from mmcl.core.paths; each analysis (mmcl.analyses) names the extra files it reads.
import copy
import re

from pathlib import Path

from mmcl.analyses import ANALYSES
from mmcl.config.fingerprint import digest, fingerprinted, to_plain
from mmcl.core import paths
from mmcl.core.integrity import quarantine_damaged
from mmcl.core.io import sha256_file
from mmcl.core.plan import plan_stages, scored_tasks
from mmcl.data.families import generation_tasks
from mmcl.jobs.datasets import files_owner, source_paths
from mmcl.jobs.params import load_params
from mmcl.methods import METHODS
from mmcl.models.backbones import BACKBONES
from mmcl.models.backbones.unified import IMAGE_TOKENIZER

PARAMS_FILE = config.get("params", "params.yaml")
PRESET = config.get("preset")  # `--config preset=<name>`: the grid of presets.<name> (a paper table)
PARAMS = load_params(PARAMS_FILE, preset=PRESET)
# A preset's report, or a paper configuration's (a params file that `extends` params.yaml), goes to its own
# directory, so that it never replaces the default grid's report.
REPORT_NAME = PRESET or (Path(PARAMS_FILE).stem if PARAMS.extends else None)
REPORT_DIR = f"reports/{REPORT_NAME}" if REPORT_NAME else "reports"
GRID_NAME = REPORT_NAME or "default"  # names what only this grid's jobs write into shared run directories
GRID = PARAMS.grid
SUITE = GRID.suite
ANALYSES_USED = [ANALYSES.get(name)() for name in ANALYSES.names()]

# A checkpoint or artifact that no longer matches its recorded hashes is moved aside before the DAG
# is built, so this run recomputes it and everything after it (jobs parse this file too: skip there).
if workflow.is_main_process:
    quarantine_damaged(Path(paths.RESULTS), Path(".snakemake/mmcl-verified.json"))


def _names(values):
    return "|".join(re.escape(str(v)) for v in values)


wildcard_constraints:
    suite=_names(PARAMS.suites),
    dataset=_names(PARAMS.datasets),
    file=r"[^/]+",
    backbone=_names(PARAMS.backbones),
    method=_names(PARAMS.methods),
    order=_names(PARAMS.suite().orders),
    seed=r"\d+",
    stage=r"[^/]+",


def run_of(wildcards):
    """The (suite, backbone, method, seed) of a job's wildcards: the first arguments of the stage paths."""
    return wildcards.suite, wildcards.backbone, wildcards.method, wildcards.seed


def suite_datasets(wildcards):
    """The converted datasets a suite's tasks read (none for a generated suite)."""
    tasks = PARAMS.suites[wildcards.suite].tasks.values()
    return sorted({paths.dataset_summary(task.dataset) for task in tasks if task.dataset})


def dataset_downloads(wildcards):
    """Where the files a dataset converts are obtained: downloads/<dataset>, or those of its `files_from`."""
    return paths.downloads(files_owner(PARAMS, wildcards.dataset))


def dataset_sources(wildcards):
    """What a dataset's conversion reads: its (or its `files_from`'s) downloaded files and unpacked archives."""
    owner = files_owner(PARAMS, wildcards.dataset)
    return [str(path) for path in source_paths(PARAMS.datasets[owner].files, Path(paths.downloads(owner)))]


def source_fingerprint(wildcards):
    """Obtain a file again when its source (URL, path, checksum, archive type) changes, not the rest of its dataset."""
    return digest(to_plain(PARAMS.datasets[wildcards.dataset].files[wildcards.file]))


def schedule(method):
    return METHODS.get(PARAMS.methods[method].type).schedule


def stages(method, order):
    return plan_stages(schedule(method), PARAMS.order(order))


def suite_fingerprint(*sections):
    """`fingerprint("suites.{suite}", *sections)`, blind to the tasks' scoring (`metric`, hashed as unset): a
    job that prepares or trains on the suite's data re-runs when the data changes, not its scoring."""

    def value(wildcards):
        plain, suite = PARAMS.resolved(), f"suites.{wildcards.suite}"
        node = copy.deepcopy(fingerprinted(plain, suite))
        for task in node["tasks"].values():
            task["metric"] = None
        named = [section.format(**wildcards) for section in sections]
        return digest({suite: node} | {section: fingerprinted(plain, section) for section in named})

    return value


# The code that scores predictions: a change re-runs the scoring jobs, not the predictions.
SCORING_CODE = digest(
    [sha256_file(f) for part in ("metrics", "data/families") for f in sorted((Path(paths.__file__).parents[1] / part).rglob("*.py"))]
)


def fingerprint(*sections):
    """A param whose value changes when these params.yaml sections do, so Snakemake re-runs the job."""

    def value(wildcards):
        return PARAMS.fingerprint(*(s.format(**wildcards) for s in sections))

    return value


def method_of(name):
    return METHODS.get(PARAMS.methods[name].type)(PARAMS.methods[name])


def base_inputs(wildcards):
    """The suite's data and the artifacts the backbone is assembled from (an embedded unified backbone's
    image tokenizer; none for the others, so their jobs are unchanged)."""
    config = PARAMS.backbones[wildcards.backbone]
    artifacts = {IMAGE_TOKENIZER: paths.image_tokenizer_dir(wildcards.suite, wildcards.backbone)}
    needed = BACKBONES.get(config.family)(config).required_artifacts()
    return {"data": paths.suite_manifest(wildcards.suite)} | {name: artifacts[name] for name in needed}


def feature_inputs(wildcards):
    """The backbone's feature cache (`rule encode_media`) for the jobs that read media, when its encoders are
    frozen and `feature_cache` is on (nothing otherwise: those jobs decode the media)."""
    config = PARAMS.backbones[wildcards.backbone]
    if config.feature_cache and config.freeze_encoders:
        return {"features": paths.feature_cache(wildcards.suite, wildcards.backbone)}
    return {}


def features_flag(wildcards, input):
    return f"--features {input.features}" if "features" in input.keys() else ""


def judge_input(wildcards):
    """The judge of the suite's generated images, for suites with generation tasks (nothing otherwise)."""
    return {"judge": paths.judge_dir(wildcards.suite)} if generation_tasks(PARAMS.suites[wildcards.suite]) else {}


def stage_of(wildcards):
    return next(
        s
        for order in PARAMS.suite(wildcards.suite).orders
        for s in stages(wildcards.method, order)
        if s.key == wildcards.stage
    )


def start_model(wildcards):
    """The model every run of a suite starts from: the aligned model when the suite has an alignment
    stage (one per suite and backbone, shared by every method and seed), else the base model. Stage
    checkpoints hold only what differs from it, so their evaluation loads it too."""
    aligned = PARAMS.suites[wildcards.suite].alignment is not None
    return paths.start_model(wildcards.suite, wildcards.backbone, aligned)


def model_inputs(wildcards):
    """A stage's model starts from the run's start model and, unless it is the first stage, the
    previous stage's checkpoint (which is also the model a `teach` job runs)."""
    stage = stage_of(wildcards)
    inputs = {"data": paths.suite_manifest(wildcards.suite), "base": start_model(wildcards)}
    if stage.previous:
        inputs["prev"] = paths.stage_checkpoint(*run_of(wildcards), stage.previous)
    return inputs


def stage_artifacts(wildcards):
    """The cached artifacts a stage's method reads, each made by the rule of that name (teach, replay)."""
    return method_of(wildcards.method).required_artifacts(stage_of(wildcards))


def stage_inputs(wildcards):
    """A training stage reads its model inputs, its artifacts (`<stage dir>/<name>`) and the converted
    datasets its method reads besides the suite's (MoDE's image-text pairs; none for the other methods)."""
    w = wildcards
    artifacts = {name: paths.stage_artifact(name, *run_of(w), w.stage) for name in stage_artifacts(w)}
    datasets = [paths.dataset_summary(name) for name in method_of(w.method).datasets()]
    return model_inputs(w) | artifacts | ({"datasets": datasets} if datasets else {})


def artifact_flags(wildcards, input):
    return " ".join(f"--artifact {name}={input[name]}" for name in stage_artifacts(wildcards))


def stage_fingerprint(wildcards):
    """Re-run a stage when the settings that shape it change (a loss weight of later stages does not)."""
    settings = method_of(wildcards.method).stage_settings(stage_of(wildcards))
    return digest([settings, PARAMS.fingerprint("train")])


def teacher_fingerprint(wildcards):
    return digest(method_of(wildcards.method).teacher_settings())


def replay_fingerprint(wildcards):
    return digest(PARAMS.methods[wildcards.method].replay_fraction)


def previous_flag(wildcards, input):
    return f"--prev {input.prev}" if "prev" in input.keys() else ""


def grid_stages(method):
    """Every stage of `method` in the grid's orders, once each (orders share their leading stages)."""
    found = {stage.key: stage for order in GRID.orders for stage in stages(method, order)}
    return list(found.values())


def scored(suite, stage):
    """The tasks a stage checkpoint is scored on in this grid (`evaluation.cells`; mmcl.core.plan.scored_tasks)."""
    orders = [PARAMS.order(order) for order in GRID.orders]
    return scored_tasks(stage, orders, PARAMS.suites[suite].evaluated_tasks, PARAMS.evaluation.cells)


def run_checkpoints(wildcards):
    return [paths.stage_checkpoint(*run_of(wildcards), s.key) for s in grid_stages(wildcards.method)]


def prediction_targets(wildcards):
    """`mmcl predict --target` of every stage checkpoint of the method and seed: <checkpoint>=<its tasks>."""
    targets = []
    for stage, checkpoint in zip(grid_stages(wildcards.method), run_checkpoints(wildcards), strict=True):
        targets.append(f"{checkpoint}={','.join(scored(wildcards.suite, stage))}")
    return " ".join(targets)


def run_stage_scores(wildcards):
    return [paths.stage_scores(*run_of(wildcards), s.key) for s in stages(wildcards.method, wildcards.order)]


def run_analysis_inputs(wildcards):
    """What the run's analyses read beside its evaluations (e.g. lm-eval's scores, the last checkpoint)."""
    scores = run_stage_scores(wildcards)
    w = wildcards
    return sorted({path for a in ANALYSES_USED for path in a.aggregate_inputs(PARAMS, w.suite, w.backbone, scores)})


RUN_FILES = expand(
    paths.run_file(),
    suite=SUITE,
    backbone=GRID.backbones,
    method=GRID.methods,
    seed=GRID.seeds,
    order=GRID.orders,
)
REPORT_FILES = [
    f"{REPORT_DIR}/{name}" for name in ("index.md", "results.csv", "summary.csv", "metrics.json", "environment.json")
]
# What the report's analyses read besides the runs (e.g. MoDE's Figure 5 files), by analysis.
REPORT_INPUTS = {analysis.name: analysis.report_inputs(PARAMS, GRID) for analysis in ANALYSES_USED}


# --- Cluster resources (params.yaml `resources:`), named as snakemake-executor-plugin-slurm reads them ---
# A local run ignores all of them but `threads` (Snakemake only enforces resources given to --resources).
RESOURCES = PARAMS.resources
# Training jobs get SIGTERM this long before their time limit (at most a fifth of it): they save a
# resumable state and exit 75, and the retry, with more time, resumes. Not SIGUSR1: Slurm signals every
# process of the job step, and the Snakemake process running the rule there dies of SIGUSR1 (ending the
# job mid-save) while it waits for the command on SIGTERM.
WARNING_SECONDS = 300


def cpus(kind):
    return getattr(RESOURCES, kind).cpus


def cluster_resources(kind):
    """A rule's `resources:` for one `resources.<kind>` entry of params.yaml."""
    job = getattr(RESOURCES, kind)
    resources = {
        "cpus_per_task": job.cpus,
        "mem_mb": job.mem_mb,
        "runtime": lambda wildcards, attempt: job.runtime * attempt,
        "gpu": job.gpus,
        "gpu_model": job.gpu_type if job.gpus else None,
        "slurm_partition": RESOURCES.partition,
        "slurm_account": RESOURCES.account,
    }
    if kind.startswith("train"):
        resources["slurm_extra"] = f"--signal=TERM@{min(WARNING_SECONDS, job.runtime * 60 // 5)}"
    # Unset, not None: a rule's None would also hide --default-resources given on the command line.
    return {name: value for name, value in resources.items() if value is not None}


def stage_launcher():
    """`mmcl`, or `accelerate launch` with one process per GPU when a stage asks for more than one."""
    gpus = RESOURCES.train_stage.gpus
    if gpus <= 1:
        return "mmcl"
    config = f"workflow/accelerate/{RESOURCES.distributed}.yaml"
    # Port 0: a free rendezvous port, as several multi-GPU jobs may share a node.
    return f"accelerate launch --num_processes {gpus} --config_file {config} --main_process_port 0 -m mmcl"
