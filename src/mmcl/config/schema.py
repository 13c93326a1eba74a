"""Typed view of ``params.yaml``: the experiment grid and everything it refers to.

OmegaConf structured configs (``mmcl.config.load``): a misspelt key or a wrong type fails at load time
with the file, the dotted key and the closest valid name, and every numeric setting's allowed range is
declared beside its field (``mmcl.config.ranges``). Methods, backbone families and dataset adapters
extend ``MethodConfig``, ``BackboneConfig`` and ``DatasetConfig`` with their own settings, in their
modules. This module imports no torch and no registry: the Snakefile reads it on every parse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from mmcl.config.fingerprint import fingerprint, to_plain
from mmcl.config.ranges import FRACTION, PROPER_FRACTION, non_negative, positive, ranged

MODALITIES = ("image", "audio", "video", "text")


@dataclass
class TaskConfig:
    family: str = MISSING  # task family in src/mmcl/data/ (captioning, qa)
    modality: str = MISSING  # image | audio | video | text
    dataset: str | None = None  # converted dataset (`datasets:`) it reads, for suites with `generator: datasets`
    metric: str | None = None  # the family's scoring variant (qa: exact | vqa); null: the family's default


@dataclass
class SplitSizes:
    train: int = positive(2000)
    test: int = positive(100)
    pretrain: int = non_negative(2000)  # tagged media per encoder, for backbones whose encoders start random (0: none)


@dataclass
class WorldConfig:
    """Knobs of the procedurally generated world shared by all micl-synth tasks."""

    image_size: int = positive(32)
    sample_rate: int = positive(16000)
    audio_seconds: float = positive(1.0)
    video_frames: int = positive(4)
    max_objects: int = positive(1)
    references_per_caption: int = positive(3)


@dataclass
class AlignmentConfig:
    """The LLaVA-1.5 alignment stage: before the continual stages, only the projector of ``task``'s
    modality learns a captioning task (LLM and encoders frozen). It runs once per (suite, backbone),
    and every run's first stage starts from its checkpoint (mitigation methods apply only from there)."""

    task: str = MISSING  # a captioning task of the suite; in no order, and not evaluated
    steps: int = positive(300)
    batch_size: int = positive(32)
    lr: float = positive(1e-3)
    warmup_ratio: float = ranged(0.05, PROPER_FRACTION)
    grad_clip: float = non_negative(1.0)


@dataclass
class SuiteConfig:
    # a generator in src/mmcl/data/generators/ that writes every task of the suite (`datasets`: link each
    # task to its converted dataset)
    generator: str = "micl_synth"
    seed: int = 0  # data seed: same seed, same bytes
    sizes: SplitSizes = field(default_factory=SplitSizes)  # micl_synth's; a dataset suite takes every sample
    world: WorldConfig = field(default_factory=WorldConfig)  # also sizes the tiny backbone's encoder inputs
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    # Text-only task (a name, or a list of names) the tiny backbone's stage-0 LLM is trained on. Typed
    # Any because OmegaConf has no str-or-list type; mmcl.config.load checks it, text_tasks reads it.
    text_task: Any = None
    orders: dict[str, list[str]] = field(default_factory=dict)
    alignment: AlignmentConfig | None = None  # the LLaVA-1.5 alignment stage (null: runs start from the base)

    @property
    def text_tasks(self) -> list[str]:
        """The stage-0 text tasks as a list (none, one or several)."""
        if self.text_task is None:
            return []
        return [self.text_task] if isinstance(self.text_task, str) else list(self.text_task)

    @property
    def evaluated_tasks(self) -> list[str]:
        """The tasks every checkpoint is evaluated on: all but the alignment task (columns of the matrix)."""
        return [task for task in self.tasks if self.alignment is None or task != self.alignment.task]


@dataclass
class GridConfig:
    suite: str = MISSING
    orders: list[str] = MISSING
    methods: list[str] = MISSING
    backbones: list[str] = MISSING
    seeds: list[int] = field(default_factory=lambda: [0])
    # The method every other is tested against in the tables (paired by seed); None: finetune where the grid
    # runs it, else no test.
    baseline: str | None = None

    @property
    def compare_with(self) -> str | None:
        return self.baseline or ("finetune" if "finetune" in self.methods else None)


@dataclass
class TrainConfig:
    steps: int = positive(200)  # optimizer steps per task of a stage
    task_steps: dict[str, int] = field(default_factory=dict)  # tasks that need another number of steps
    batch_size: int = positive(16)  # global batch (split across processes under accelerate)
    lr: float = positive(1e-3)
    weight_decay: float = non_negative(0.0)
    warmup_ratio: float = ranged(0.05, PROPER_FRACTION)
    schedule: str = "cosine"  # constant | linear | cosine
    grad_clip: float = non_negative(1.0)
    precision: str = "auto"  # auto (bf16 on CUDA when supported, else fp32) | fp32 | bf16 | fp16
    log_every: int = positive(25)
    # Resumable training states: every N steps and every M minutes of wall time (0: not by that measure);
    # always on SIGTERM/SIGUSR1. Minutes suit every model size: a full fine-tune's state is large.
    checkpoint_every: int = non_negative(0)
    checkpoint_minutes: float = non_negative(30.0)
    num_workers: int | None = non_negative(None)  # DataLoader workers (None: cpus per process - 1 on CUDA, 0 on CPU)
    # Samples per forward and backward on each process; the gradients of batch_size / processes samples are
    # accumulated into one optimizer step. None: the process's whole share in one forward.
    micro_batch_size: int | None = positive(None)
    gradient_checkpointing: bool = False  # recompute the LLM's activations in backward: less memory, ~30% slower
    # Batches of one modality and similar length (mmcl.engine.sampling): less padding wasted, but it changes
    # which samples share a batch, so results differ (hashed in stage fingerprints only when true).
    group_by_length: bool = False


@dataclass
class EvalConfig:
    batch_size: int = positive(64)
    max_new_tokens: int = positive(24)
    # A seeded subset of each task's test split, the same for every checkpoint (None: the whole split);
    # the report states its size and the standard error it implies.
    max_samples: int | None = positive(None)
    subset_seed: int = non_negative(0)
    # Which (checkpoint, task) cells are scored: `needed` those the metrics read (the tasks learned so far,
    # the next one, the tasks outside the order; the base model on every task), `all` the whole matrix.
    cells: str = "needed"
    # Fold LoRA deltas into the weights for inference where the method allows it (W + BA: faster, and in
    # bf16 rounded once more); false: evaluate the adapter path as it was trained.
    merge_adapters: bool = True


@dataclass
class JudgeConfig:
    """The judge of generated images (``mmcl.models.judge``): a CNN trained once per suite with generation
    tasks, on their real training images, that reads colour, shape and position."""

    steps: int = positive(600)
    batch_size: int = positive(64)
    lr: float = positive(2e-3)
    hidden: int = 32  # channels of its first convolution
    seed: int = 0


DISTRIBUTED = ("ddp", "fsdp", "deepspeed_zero2")
CELLS = ("needed", "all")  # evaluation.cells  # workflow/accelerate/<name>.yaml


@dataclass
class JobResources:
    """What one kind of job asks the cluster for."""

    gpus: int = 0
    gpu_type: str | None = None  # GPU model as the cluster names it (e.g. a100); None: any
    cpus: int = 1  # also the job's thread count (OMP_NUM_THREADS), locally capped by --cores
    mem_mb: int = 4000
    runtime: int = 30  # wall-time minutes of the first attempt; attempt n gets n times as much
    # Memory of one of its GPUs in GiB (an "80 GB" A100 or H100: 80). `mmcl plan` fails when a job's estimated
    # peak exceeds it, and so does `mmcl validate-config` (mmcl.jobs.cost.check_memory); None: reported, unchecked.
    gpu_mem_gb: int | None = positive(None)


@dataclass
class ResourcesConfig:
    """Per-rule cluster resources. Not results-relevant: DVC and Snakemake do not re-run jobs for them."""

    partition: str | None = None  # Slurm partition (None: the cluster's default)
    account: str | None = None  # Slurm account (None: none)
    distributed: str = "ddp"  # how a stage uses more than one GPU: ddp | fsdp | deepspeed_zero2
    default: JobResources = field(default_factory=JobResources)  # prepare, reference, aggregate, report
    train_base: JobResources = field(default_factory=lambda: JobResources(gpus=1, cpus=2))
    train_stage: JobResources = field(default_factory=lambda: JobResources(gpus=1))
    evaluate: JobResources = field(default_factory=lambda: JobResources(gpus=1))


ARCHIVES = ("none", "zip", "tar")  # tar: any compression tarfile reads (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz)


@dataclass
class SourceFile:
    """One file of a dataset, saved as ``downloads/<dataset>/<its name>``: downloaded from ``url``, or
    found at ``path`` where the user put it (sources behind a login or a form; see ``manual``)."""

    url: str | None = None
    path: str | None = None
    sha256: str | None = None  # expected SHA-256; null: not verified (a warning prints the hash to pin)
    archive: str = "none"  # none | zip | tar: unpacked into downloads/<dataset>/extracted/<its name>/


@dataclass
class DatasetConfig:
    """Settings every dataset has; an adapter's own dataclass extends this (the files it looks for)."""

    adapter: str = MISSING  # converter of the source's layout in src/mmcl/data/sources/ (defaults to the name)
    licence: str = MISSING  # terms of use of the source, recorded in data/<dataset>/prepare.json
    manual: str | None = None  # how to obtain the files that have a `path:` instead of a `url:`
    files: dict[str, SourceFile] = field(default_factory=dict)  # file name -> where it comes from
    # Another dataset whose files this one converts instead of its own `files`: one download, converted
    # several ways (e.g. each task group of an instruction mixture).
    files_from: str | None = None


@dataclass
class Params:
    grid: GridConfig = field(default_factory=GridConfig)
    suites: dict[str, SuiteConfig] = field(default_factory=dict)
    datasets: dict[str, Any] = field(default_factory=dict)  # real datasets: name -> DatasetConfig (its adapter's)
    backbones: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)  # suites with generation tasks only
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    presets: dict[str, GridConfig] = field(default_factory=dict)  # named grids: one per paper table
    # Python files, or directories of them, relative to the params file that lists them: their modules
    # register more methods, backbone families, task families or analyses (mmcl.core.registry).
    plugins: list[str] = field(default_factory=list)
    # A paper's configuration file names the params file it starts from (relative to itself); see read_params.
    extends: str | None = None
    path: str = "params.yaml"  # where these params were read from (set by read_params)
    preset: str | None = None  # the preset whose grid replaced `grid` (set by read_params)

    def suite(self, name: str | None = None) -> SuiteConfig:
        return self.suites[name or self.grid.suite]

    def order(self, name: str, suite: str | None = None) -> list[str]:
        return list(self.suite(suite).orders[name])

    def resolved(self) -> dict:
        """Plain-dict form of the fully resolved params (what every job records beside its outputs)."""
        return to_plain(self)

    def fingerprint(self, *sections: str) -> str:
        """Short hash of the named sections (dotted paths), for rerun triggers and artifact keys."""
        return fingerprint(self.resolved(), *sections)

    def config_fingerprint(self) -> str:
        """The hash of every section that shapes results (not resources, presets or plugins' paths)."""
        return self.fingerprint("grid", "suites", "datasets", "backbones", "methods", "train", "evaluation", "judge")

    def run_fingerprint(self, suite: str, backbone: str, method: str) -> str:
        """The hash of what one run's results depend on: two result sets match cell by cell where it is equal."""
        sections = (f"suites.{suite}", f"backbones.{backbone}", f"methods.{method}", "train", "evaluation", "judge")
        return self.fingerprint(*sections)


@dataclass
class MethodConfig:
    """Settings every method has; a method's own dataclass extends this."""

    type: str = MISSING  # registered method implementation (defaults to the entry's name)
    lr: float | None = positive(None)  # overrides train.lr for this method
    # Rehearsal, for any method: this fraction of each earlier task's training split is mixed into
    # every stage after the first (mmcl.data.replay). 0: none.
    replay_fraction: float = ranged(0.0, FRACTION)


@dataclass
class VideoConfig:
    frames: int = 4  # frames sampled per clip, each through the image encoder
    temporal: str = "concat"  # concat (keep every frame's tokens) | mean (average over frames)


MEASURES = ("nlu", "nlg")  # the linguistic measures (mmcl.metrics.linguistic), as task families name them


@dataclass
class LMEvalConfig:
    """lm-evaluation-harness tasks run on the LLM of every checkpoint (``mmcl lm-eval``), each scored by
    its ``acc``, grouped into the linguistic measures. Names are checked against the installed
    lm_eval when the job starts, not here: indexing its tasks takes seconds and this module stays light."""

    nlu: list[str] = field(default_factory=list)  # e.g. [wsc273, winogrande, arc_easy, arc_challenge]
    nlg: list[str] = field(default_factory=list)  # e.g. [lambada_standard]
    limit: int | None = positive(None)  # documents per task (None: all; a number only to try the pipeline)
    batch_size: int = positive(16)
    include_path: str | None = None  # a directory of extra task YAMLs (e.g. tasks on local copies of the data)

    def tasks(self) -> dict[str, str]:
        """Task name -> its measure."""
        return {task: measure for measure in MEASURES for task in getattr(self, measure)}


@dataclass
class BackboneConfig:
    """Settings every backbone family has; a family's own dataclass extends this."""

    family: str = MISSING
    init_seed: int = 0  # random init of what the family builds (projectors, new embeddings, a tiny model)
    freeze_encoders: bool = True
    projector_hidden: int | None = None  # MLP width (None: the LLM's hidden size)
    video: VideoConfig = field(default_factory=VideoConfig)
    size: str | None = None  # parameter count label for reports (e.g. 160M)
    attn_implementation: str = "sdpa"  # the LLM's attention: sdpa | eager | flash_attention_2 (when installed)
    # Frozen encoders' outputs computed once per suite (`mmcl encode-media`) and read at every step instead of
    # decoding and encoding the media again; ignored when the encoders train (freeze_encoders: false).
    feature_cache: bool = True
    # Language ability of a pretrained LLM, measured with lm-evaluation-harness after every stage. It
    # belongs to the backbone, not the suite: it measures the LLM whatever data the stages train on, and
    # only a real LLM can do the harness's tasks (the tiny one knows only its benchmark's words).
    # None: the suite's own text tasks (text_nlu, text_nlg) are the measures.
    lm_eval: LMEvalConfig | None = None

    @property
    def generates_images(self) -> bool:
        """Whether its generated images can be decoded and judged (a suite's generation tasks need it)."""
        return False

    @property
    def stage0_draws(self) -> bool:
        """Whether its stage 0 trains on the suite's generation tasks (which the suite must then have)."""
        return False
