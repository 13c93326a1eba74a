"""``mmcl plan``: what each kind of job of the grid will cost, before a cluster is asked.

For every kind of GPU job the grid expands into (``train_base``, ``align``, ``train_stage`` per backbone and
method, ``teach``, ``evaluate``, ``lm_eval``) the plan gives the number of jobs, the estimated peak memory of
one GPU (weights, gradients, optimizer state, activations at the micro-batch, logits, other) and GPU-hours.
``check_memory`` (run by ``mmcl plan``; cheap enough for validation) fails when a job's peak exceeds its
``resources.<kind>.gpu_mem_gb``, naming the micro-batch that fits.

Memory, per GPU (bytes):

- weights: frozen parts at the compute precision (bf16: 2 B; ``train.precision: fp32``: 4 B); trainable
  parameters as fp32 masters (4 B), with fp32 gradients (4 B) and AdamW's two fp32 moments (8 B).
  ``resources.distributed``: zero2 splits gradients and optimizer state over the GPUs, fsdp the weights too.
- activations: what autograd keeps for backward, per LLM block and token (``block_bytes``): Korthikanti et al.
  2022 ("Reducing Activation Recomputation in Large Transformer Models", Table 2) count 34·s·b·h + 5·a·s²·b
  bytes per layer for GPT-3-style blocks in 16 bit. Counted here per tensor for the blocks transformers runs:
  no dropout masks, norms keep an fp32 copy of their input, gated MLPs (SwiGLU) keep four intermediate-wide
  tensors, K and V repeated to the query heads; eager attention adds the fp32 softmax and its cast per head,
  a·s²·b·(4 + 2) bytes, which sdpa/flash kernels do not store. With gradient checkpointing a block keeps only
  its input (h values per token) and one block is recomputed at a time. Adapters keep their own copy of each
  adapted layer's input (and a dropout mask, a router's fp32 copy). Encoders that do not train run without
  autograd: only one layer's worth is held at a time.
- logits: rows × positions × vocab × (2 + 4 + 4) B: the head's bf16 output, the fp32 log-probabilities the
  loss keeps and their gradient. Positions are the answer's (``supervised_only``: the LM head runs only where
  a token is supervised); ``supervised_only=False`` counts every position, as before that.
- other: a method's own tensors (EWC's Fisher and anchor, 12 B per trainable parameter at its Fisher pass)
  and ``RUNTIME_GIB`` for the CUDA context and workspaces.

The sum is the peak: gradients of an accumulated step live while the next micro-batch's activations do.

Time: FLOPs over ``EFFICIENCY`` (40%) of the GPU's dense bf16 peak (``GPUS``; ``resources.<kind>.gpu_type``
picks one, else the A100 80GB is assumed). Per token, a part with N parameters in its matrix products costs
2·N forward; backward adds 4·N where it trains (6·N in all) and 2·N where it is frozen but the gradient passes
through it to something trained (the LLM under LoRA: 4·N); frozen encoders cost the forward only. Attention
adds 4·L·s·h per token forward (×3 with backward), as in Narayanan et al. 2021 ("Efficient Large-Scale
Language Model Training on GPU Clusters", §5.1). Gradient checkpointing adds one more forward of the LLM.
With the feature cache (frozen encoders, ``feature_cache: true``) the encoders run once, in ``encode_media``
(a forward over every train and test media file of the suite), and no other job runs or holds their
activations.
Decoding (evaluate) is bound by memory bandwidth: every step of a batch reads all weights once, at 40% of
the GPU's bandwidth.

Sequence lengths: media tokens per input (CLIP ViT-L/14: 257 at 224 px, 577 at 336; Whisper: 50 per second of
a clip, ``AUDIO_SECONDS``, the 1500 of its 30 s window cut to the clip's length; video: frames × tokens with
``temporal: concat``; Chameleon: 1026 image tokens) plus ``TEXT_TOKENS``, a planning length of each dataset's
prompt and answer (a batch is padded to its longest sample, so these are long rather than mean lengths). The
extra sequences a method's loss runs (LwF's pool samples, MoInCL's pseudo and instruction samples, MoDE's
distillation pairs) run with every micro-batch (``mmcl.engine.loop``): their activations add to a micro-
batch's, and their FLOPs count once per micro-batch.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from mmcl.config.schema import JobResources, MethodConfig, Params
from mmcl.core import paths
from mmcl.core.plan import Stage, plan_stages, scored_tasks
from mmcl.core.registry import ConfigError
from mmcl.data.media import window_positions
from mmcl.methods import METHODS
from mmcl.models.backbones import BACKBONES
from mmcl.models.shapes import BackboneShape, Linear, Shape, backbone_shape

GIB = 2**30
EFFICIENCY = 0.4  # sustained share of the GPU's dense bf16 peak (and of its memory bandwidth when decoding)
RUNTIME_GIB = 1.0  # CUDA context, cuBLAS/cuDNN workspaces: outside what tensors take
SUPERVISED_ONLY = True  # logits only where a token is supervised (mmcl.models.mllm.supervised_forward)
TEACH_BATCH = 32  # sequences per forward of a teach job (mmcl.engine.distill.teach)
ASSUMED_TEST_SAMPLES = 5000  # per task, when the dataset is not converted yet and evaluation.max_samples is unset
LM_EVAL_TOKENS_PER_TASK = 1_000_000  # a harness task of a few thousand documents, every choice one request
LM_EVAL_POSITIONS = 512  # the longest request of a batch (WinoGrande, ARC, LAMBADA are shorter)
INSTRUCTION_TOKENS = 256  # a Natural-Instructions definition with its input (MoInCL's IKD)
SPECIAL_TOKENS = 3  # bos, the answer marker, eos
MASTER, GRADIENT, ADAM = 4, 4, 8  # bytes per trainable parameter


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: int
    bf16_tflops: float  # dense peak
    bandwidth_tbs: float

    @property
    def flops(self) -> float:
        """Sustained FLOP/s the estimate assumes."""
        return self.bf16_tflops * 1e12 * EFFICIENCY


# The vendors' data-sheet figures (SXM parts); gpu_type names them as a cluster usually does.
GPUS = {
    "a100": Gpu("A100 80GB SXM", 80, 312.0, 2.04),
    "h100": Gpu("H100 80GB SXM", 80, 989.0, 3.35),
    "h200": Gpu("H200 141GB SXM", 141, 989.0, 4.8),
}
DEFAULT_GPU = "a100"


@dataclass(frozen=True)
class TextLength:
    """Planning length of a task's text in LLM tokens: the prompt and the answer (the supervised part)."""

    prompt: int
    answer: int


# By dataset adapter, else by task family. Rough BPE counts of long samples of each source.
TEXT_TOKENS = {
    "karpathy": TextLength(16, 40),
    "msrvtt": TextLength(16, 32),
    "audiocaps": TextLength(16, 32),
    "llava_pretrain": TextLength(16, 32),
    "vqa": TextLength(32, 8),
    "msvd_qa": TextLength(24, 8),
    "clotho_aqa": TextLength(24, 8),
    "gqa": TextLength(32, 8),
    "textvqa": TextLength(32, 8),
    "vizwiz": TextLength(64, 8),
    "imagenet": TextLength(16, 16),
    "scienceqa": TextLength(240, 4),
    "refcoco": TextLength(48, 24),
    "llava_mix": TextLength(384, 128),  # earlier turns flattened into the instruction; replies are long
    "captioning": TextLength(16, 32),
    "qa": TextLength(32, 8),
    "multiple_choice": TextLength(64, 4),
    "last_word": TextLength(48, 2),
    "generation": TextLength(16, 8),
}
# Planning clip length of a dataset's audio in seconds, by adapter (long rather than mean clips): the LLM
# sees the positions of the clip's share of its encoder's window. Other adapters' clips fill the window;
# an embedded suite's are its world's audio_seconds.
AUDIO_SECONDS = {"audiocaps": 10.0, "clotho_aqa": 30.0}
LIKELIHOOD_FAMILIES = ("multiple_choice",)  # evaluated by scoring every position, not by generating


@dataclass(frozen=True)
class Precision:
    frozen: int  # bytes per frozen weight
    activation: int  # bytes per activation value


def precision_of(train_precision: str) -> Precision:
    """``auto`` is bf16 on the GPUs planned for."""
    return Precision(4, 4) if train_precision == "fp32" else Precision(2, 2)


# --- what a method trains: the cost model's view of a method, keyed by its registered type ---


@dataclass(frozen=True)
class Adapter:
    """Trainable low-rank matrices on some linear layers of every LLM block."""

    targets: tuple[Linear, ...]  # adapted layers of one block
    rank: int  # r summed over the experts of one layer
    params: int  # trainable parameters in all blocks (routers included)
    input_copies: int = 1  # copies of the layer's input it keeps (peft casts it; MoDE indexes text and image tokens)
    mask: bool = False  # dropout: a 1-byte mask per input value
    fp32_input: bool = False  # a router's fp32 copy of the input
    rank_tensors: int = 1  # rank-sized tensors it keeps per token (LoRA: A's output; experts: also the gated one)


@dataclass(frozen=True)
class Extra:
    """Sequences a method's loss runs each step besides the batch."""

    rows: int
    text: TextLength | None = None  # None: the stage's task's text
    modality: str | None = "task"  # "task": the stage's task's media; None: text only
    trained: bool = True  # False: forward only, no autograd (MoDE's adapter-free teacher)
    every_position: bool = False  # its loss reads the logits of every position (MoDE's), not only the answer's


@dataclass(frozen=True)
class Training:
    """What a method's stages train and what they add to the task loss."""

    llm: bool = False  # every LLM weight trains
    adapter: Adapter | None = None
    projectors: str = "all"  # all | stage (only the stage's modality's) | none
    extras: tuple[Extra, ...] = ()  # from the second stage on
    state_bytes: int = 0  # per trainable parameter, kept by the method (from the second stage on)
    pass_rows: int = 0  # rows of a forward and backward the method runs besides training (EWC's Fisher)
    teach_rows: int = 0  # sequences its teach job runs the previous model on (0: no teach job)
    frozen_blocks: int = 0  # last LLM blocks left untrained (OLF)

    def trainable(self, backbone: BackboneShape, modality: str | None) -> int:
        llm = backbone.llm
        block = (llm.params - llm.vocab * llm.hidden * (1 if llm.tied_embeddings else 2)) / llm.layers
        count = (llm.params - self.frozen_blocks * block) if self.llm else 0
        if self.adapter:
            count += self.adapter.params * (llm.layers - self.frozen_blocks) / llm.layers
        if self.projectors == "all":
            count += sum(backbone.projectors.values())
        elif self.projectors == "stage" and modality in backbone.projectors:
            count += backbone.projectors[modality]
        if not backbone.frozen_encoders:
            count += sum(encoder.params for encoder in backbone.encoders.values())
        return int(count)


def lora_adapter(llm: Shape, r: int, targets: list[str], dropout: float, where: str) -> Adapter:
    """peft LoRA: r·(in + out) parameters per adapted layer; ``all-linear``: every linear layer of a block."""
    chosen = targeted(llm, targets, where)
    params = llm.layers * sum(r * (layer.in_features + layer.out_features) for layer in chosen)
    return Adapter(chosen, r, params, mask=dropout > 0)


def targeted(llm: Shape, targets: list[str], where: str) -> tuple[Linear, ...]:
    layers = llm.linears()
    chosen = layers if list(targets) == ["all-linear"] else tuple(layer for layer in layers if layer.name in targets)
    if not chosen:
        raise ConfigError(
            f"{where}.target_modules: none of {list(targets)} is a linear layer of the {llm.arch} LLM's blocks "
            f"({', '.join(layer.name for layer in layers)}); name some of them, or [all-linear]"
        )
    return chosen


def expert_adapter(llm: Shape, config, where: str, visual: bool) -> Adapter:
    """``experts`` LoRA experts and a router per adapted layer (mmcl.methods.experts); MoDE adds a visual LoRA."""
    chosen = targeted(llm, config.target_modules, where)
    e, r = config.experts, config.r
    per_block = sum(
        (e + visual) * r * (layer.in_features + layer.out_features) + (layer.in_features * e if e > 1 else 0)
        for layer in chosen
    )
    return Adapter(
        chosen,
        e * r,
        llm.layers * per_block,
        input_copies=1 + visual,
        mask=config.dropout > 0,
        fp32_input=e > 1,
        rank_tensors=3,
    )


def _finetune(config, backbone: BackboneShape, where: str) -> Training:
    return Training(llm=config.train_llm, projectors="all" if config.train_projectors else "none")


def _lora(config, backbone: BackboneShape, where: str) -> Training:
    adapter = lora_adapter(backbone.llm, config.r, config.target_modules, config.dropout, where)
    return Training(adapter=adapter, projectors="all" if config.train_projectors else "none")


def _on_base(config, backbone: BackboneShape, where: str) -> Training:
    return (_lora if config.base == "lora" else _finetune)(config, backbone, where)


def _soft_targets(config, backbone: BackboneShape, where: str) -> Training:
    return replace(_on_base(config, backbone, where), frozen_blocks=int(config.freeze_last_block))


def _ewc(config, backbone: BackboneShape, where: str) -> Training:
    # Fisher and anchor (fp32) from the second stage on; the Fisher pass adds its accumulators (4 B)
    return replace(_on_base(config, backbone, where), state_bytes=12, pass_rows=config.fisher_batch_size)


def _lwf(config, backbone: BackboneShape, where: str) -> Training:
    return replace(_lora(config, backbone, where), extras=(Extra(config.per_step),), teach_rows=config.pool)


def _moincl(config, backbone: BackboneShape, where: str) -> Training:
    extras = (Extra(config.ptgm.per_batch),) if config.ptgm.enabled else ()
    if config.ikd.enabled:
        extras += (Extra(config.ikd.per_step, TextLength(INSTRUCTION_TOKENS, 0), None),)
    sets = config.ptgm.enabled + config.ikd.enabled
    training = replace(_lora(config, backbone, where), projectors="stage", extras=extras)
    return replace(training, teach_rows=config.pool * sets)


def _eproj(config, backbone: BackboneShape, where: str) -> Training:
    return Training(projectors="stage")


def _moelora(config, backbone: BackboneShape, where: str) -> Training:
    adapter = expert_adapter(backbone.llm, config, where, visual=False)
    return Training(adapter=adapter, projectors="all" if config.train_projectors else "none")


def _mode(config, backbone: BackboneShape, where: str) -> Training:
    adapter = expert_adapter(backbone.llm, config, where, visual=True)
    kd = config.kd
    pairs = TEXT_TOKENS["llava_pretrain"] if kd.dataset else TEXT_TOKENS["generation"]
    student = Extra(kd.per_step, pairs, "image", every_position=True)
    extras = (student, replace(student, trained=False)) if kd.weight else ()
    return Training(adapter=adapter, projectors="all" if config.train_projectors else "none", extras=extras)


# Registered method type -> what it trains; a type not listed uses its nearest registered base class's entry.
TRAINING: dict[str, Callable[[MethodConfig, BackboneShape, str], Training]] = {
    "finetune": _finetune,
    "lora": _lora,
    "soft_targets": _soft_targets,
    "ewc": _ewc,
    "lwf": _lwf,
    "moincl": _moincl,
    "eproj": _eproj,
    "moelora": _moelora,
    "mode": _mode,
}


def training_of(params: Params, method: str, backbone: BackboneShape) -> Training:
    config = params.methods[method]
    for cls in METHODS.get(config.type).__mro__:
        if (name := vars(cls).get("name")) in TRAINING:
            return TRAINING[name](config, backbone, f"{params.path}: methods.{method}")
    raise ConfigError(
        f"{params.path}: methods.{method}: method type '{config.type}' has no cost model; add an entry for it "
        "to mmcl.jobs.cost.TRAINING (what it trains and what its loss adds)"
    )


# --- the formulas ---


@dataclass(frozen=True)
class Memory:
    """Peak memory of one GPU, in bytes."""

    weights: float = 0.0
    gradients: float = 0.0
    optimizer: float = 0.0
    activations: float = 0.0
    logits: float = 0.0
    other: float = 0.0

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.logits + self.other


@dataclass(frozen=True)
class Rows:
    """Sequences of one forward: how many, and how many positions each (padded)."""

    count: int
    positions: int
    answer: int  # supervised positions of each
    media: int = 0  # media tokens of each (inside positions)
    modality: str | None = None
    trained: bool = True  # kept for backward

    @property
    def tokens(self) -> int:
        return self.count * self.positions


def block_bytes(shape: Shape, p: int, eager: bool, positions: int) -> float:
    """Bytes one transformer block keeps for backward per token (see the module docstring)."""
    h, q, i = shape.hidden, shape.attention_width, shape.intermediate
    kept = 2 * h + q + i  # inputs of the attention and MLP projections (norm outputs), of o_proj and down_proj
    kept += 3 * q  # Q, K, V (transformers repeats K and V to the query heads when a padding mask is passed)
    kept += (3 if shape.gated_mlp else 1) * i  # gate, activation and up outputs (or the up output alone)
    per_token = p * kept + 2 * (4 + p) * h  # two norms: fp32 copy of the input, the normalised value
    if eager:  # the fp32 softmax per head and its cast to the activation dtype (none in fp32)
        per_token += shape.heads * positions * (4 + (p if p < 4 else 0))
    else:  # sdpa/flash keep their output for backward; o_proj gets a contiguous copy of it
        per_token += p * q
    return per_token


def adapter_bytes(adapter: Adapter | None, p: int) -> float:
    """Bytes an adapter keeps for backward per token and block."""
    if adapter is None:
        return 0.0
    per_input = adapter.input_copies * p + adapter.mask + 4 * adapter.fp32_input
    return sum(per_input * layer.in_features for layer in adapter.targets) + len(adapter.targets) * (
        adapter.rank_tensors * p * adapter.rank
    )


def llm_activations(
    llm: Shape, rows: Rows, p: int, eager: bool, checkpointing: bool, adapter: Adapter | None = None
) -> float:
    """What the LLM keeps for backward over ``rows``: every block's activations, or with checkpointing each
    block's input plus one block recomputed; then the final norm and the LM head's input."""
    block = rows.tokens * (block_bytes(llm, p, eager, rows.positions) + adapter_bytes(adapter, p))
    if not rows.trained:  # no autograd: one block's worth at a time
        return block
    kept = llm.layers * (rows.tokens * p * llm.hidden) + block if checkpointing else llm.layers * block
    return kept + rows.tokens * ((4 + p) + p) * llm.hidden


def logit_bytes(llm: Shape, rows: Rows, p: int, training: bool, supervised_only: bool = SUPERVISED_ONLY) -> float:
    """The head's output and, for a loss, its fp32 log-probabilities and their gradient."""
    positions = rows.answer if supervised_only else rows.positions
    return rows.count * positions * llm.vocab * (p + (8 if training else 4))


def encoder_activations(backbone: BackboneShape, rows: Rows, p: int) -> float:
    """The media side of a forward: a frozen encoder's largest layer (no autograd), and what a trained
    projector keeps (its input and its two hidden tensors) for the media tokens."""
    encoder = backbone.encoder_of(rows.modality) if rows.modality else None
    if encoder is None:
        return 0.0
    projector = rows.count * rows.media * p * (encoder.hidden + 2 * backbone.projector_width)
    if backbone.cached_media:
        return projector
    inputs = rows.count * backbone.encoder_inputs[rows.modality]
    encoded = Rows(inputs, encoder.tokens, 0)
    layer = encoded.tokens * block_bytes(encoder, p, False, encoder.tokens)
    if not backbone.frozen_encoders:
        layer *= encoder.layers
    return layer + projector


def forward_flops(shape: Shape, tokens: float, positions: int) -> float:
    """2·N per token, plus attention's 4·L·s·h."""
    return tokens * (2 * shape.active_params + 4 * shape.layers * positions * shape.hidden)


def total_params(backbone: BackboneShape, training: Training | None = None) -> int:
    """Every parameter on the GPU: the LLM, encoders, projectors, an image tokenizer, a method's adapter."""
    b = backbone
    total = b.llm.params + sum(e.params for e in b.encoders.values()) + sum(b.projectors.values())
    return total + b.image_tokenizer_params + (training.adapter.params if training and training.adapter else 0)


def training_memory(
    backbone: BackboneShape,
    training: Training,
    rows: list[Rows],
    precision: Precision,
    eager: bool,
    checkpointing: bool,
    shards: tuple[int, int] = (1, 1),
    supervised_only: bool = SUPERVISED_ONLY,
) -> Memory:
    """Peak of a training step over ``rows`` (a micro-batch and the extras beside it), without the CUDA
    context. ``shards``: how many GPUs share the weights, and the gradients and optimizer state."""
    p = precision.activation
    trainable = training.trainable(backbone, rows[0].modality)
    weight_shards, state_shards = shards
    frozen = total_params(backbone, training) - trainable
    activations = logits = 0.0
    for part in rows:
        activations += llm_activations(backbone.llm, part, p, eager, checkpointing, training.adapter)
        activations += encoder_activations(backbone, part, p)
        logits += logit_bytes(backbone.llm, part, p, part.trained, supervised_only)
    return Memory(
        weights=(frozen * precision.frozen + trainable * MASTER) / weight_shards,
        gradients=trainable * GRADIENT / state_shards,
        optimizer=trainable * ADAM / state_shards,
        activations=activations,
        logits=logits,
        other=trainable * training.state_bytes,
    )


# --- the plan ---

RESOURCE_KINDS = ("train_base", "train_stage", "evaluate")  # the kinds of GPU jobs (align and teach share them)


@dataclass
class JobEstimate:
    """One kind of job of one backbone (and method): how many, the peak of one, the GPU-hours of all."""

    kind: str  # train_base | align | train_stage | teach | evaluate | lm_eval
    backbone: str
    method: str | None
    resources: str  # its resources.<kind> entry
    count: int
    micro_batch: int  # rows of one forward on one GPU (0: no GPU work)
    positions: int  # of its longest sequence
    memory: Memory
    gpu_hours: float
    budget_gib: float  # resources.<kind>.gpu_mem_gb, else the assumed GPU's memory
    checked: bool  # whether gpu_mem_gb is set (a misfit then fails validation)
    fix: str | None = None  # what to change when it does not fit
    note: str = ""

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.kind, self.backbone, self.method) if part)

    @property
    def fits(self) -> bool:
        return self.memory.total <= self.budget_gib * GIB


@dataclass
class Plan:
    params: Params
    what: str  # "grid" or "preset <name>"
    gpus: dict[str, Gpu]  # resources kind -> the GPU assumed
    jobs: list[JobEstimate] = field(default_factory=list)
    assumed_samples: list[str] = field(default_factory=list)  # tasks whose test size is ASSUMED_TEST_SAMPLES

    def misfits(self) -> list[JobEstimate]:
        return [job for job in self.jobs if not job.fits]

    def check(self) -> None:
        """ConfigError for the first job whose peak exceeds its resources' gpu_mem_gb (unset: not checked)."""
        checked = [job for job in self.misfits() if job.checked]
        if checked:
            job, more = checked[0], len(checked) - 1
            others = f" (and {more} more kind{'s' * (more > 1)} of job: `mmcl plan` lists them)" if more else ""
            raise ConfigError(
                f"{self.params.path}: resources.{job.resources}.gpu_mem_gb: {job.name} needs about "
                f"{job.memory.total / GIB:.1f} GiB of GPU memory, more than {job.budget_gib:g}; {job.fix}{others}"
            )

    def gpu_hours(self) -> float:
        return sum(job.gpu_hours for job in self.jobs)

    def text(self) -> str:
        grid = self.params.grid
        lines = [
            f"mmcl plan: {self.params.path} ({self.what}: suite {grid.suite}; {len(grid.orders)} order(s) x "
            f"{len(grid.methods)} method(s) x {len(grid.backbones)} backbone(s) x {len(grid.seeds)} seed(s))",
        ]
        for kind, gpu in self.gpus.items():
            limit = getattr(self.params.resources, kind).gpu_mem_gb
            checked = f"gpu_mem_gb: {limit}, checked" if limit else f"gpu_mem_gb unset: compared with {gpu.memory_gib}"
            lines.append(
                f"resources.{kind}: {gpu.name}, {gpu.bf16_tflops:.0f} TFLOP/s bf16 x {EFFICIENCY:.0%} sustained, "
                f"{gpu.bandwidth_tbs} TB/s; {checked}"
            )
        lines += ["", "memory per GPU in GiB; GPU-hours of all the jobs of a row", HEADER]
        lines += [row(job) for job in self.jobs]
        lines.append(f"total: {sum(job.count for job in self.jobs)} GPU jobs, {self.gpu_hours():,.0f} GPU-hours")
        if self.assumed_samples:
            lines.append(
                f"evaluate assumes {ASSUMED_TEST_SAMPLES} test samples for {', '.join(self.assumed_samples)} "
                "(not converted yet; evaluation.max_samples caps them)"
            )
        misfits = self.misfits()
        lines += ["", f"do not fit: {len(misfits) or 'none'}"]
        lines += [f"  {job.name}: {job.memory.total / GIB:.1f} GiB > {job.budget_gib:g}; {job.fix}" for job in misfits]
        return "\n".join([*lines, "", *ASSUMPTIONS])


HEADER = (
    f"{'job':<12} {'backbone':<20} {'method':<15} {'jobs':>5} {'micro':>5} {'seq':>5} {'weights':>7} {'grads':>6} "
    f"{'optim':>6} {'activ':>7} {'logits':>7} {'other':>5} {'peak':>7} {'limit':>5} {'fits':>4} {'GPU-h':>8}"
)


def row(job: JobEstimate) -> str:
    m = job.memory
    gib = [value / GIB for value in (m.weights, m.gradients, m.optimizer, m.activations, m.logits, m.other, m.total)]
    micro, positions = (str(job.micro_batch), str(job.positions)) if job.micro_batch else ("-", "-")
    return (
        f"{job.kind:<12} {job.backbone:<20} {job.method or '-':<15} {job.count:>5} {micro:>5} {positions:>5} "
        f"{gib[0]:>7.1f} {gib[1]:>6.1f} {gib[2]:>6.1f} {gib[3]:>7.1f} {gib[4]:>7.1f} {gib[5]:>5.1f} {gib[6]:>7.1f} "
        f"{job.budget_gib:>5g} {'yes' if job.fits else 'NO':>4} {job.gpu_hours:>8.1f}"
        + (f"  {job.note}" if job.note else "")
    )


ASSUMPTIONS = (
    "how it is estimated (mmcl.jobs.cost):",
    "  peak = weights + gradients + optimizer + activations + logits + other, per GPU",
    "  weights: frozen bf16 (2 B; train.precision fp32: 4 B); trainable: fp32 master 4 B + gradient 4 B + AdamW 8 B",
    "  activations per LLM block and token: p·(2h + q + i) [projection inputs] + p·3q [Q, K, V] + p·(3i | i) [MLP]",
    "    + 2·(4 + p)·h [norms] + a·s·(4 + p) with eager attention (after Korthikanti et al. 2022); p = 2 B;",
    "    gradient checkpointing keeps p·h per block and token, plus one block; adapters keep their input",
    "  logits: rows x positions x vocab x (2 + 4 + 4) B (every position; supervised-only: the answer's)",
    f"  other: method state (EWC: 12 B per trainable parameter) + {RUNTIME_GIB:.0f} GiB CUDA context",
    f"  GPU-hours: FLOPs / ({EFFICIENCY:.0%} of the bf16 peak): trained parts 6·N·tokens, frozen parts the gradient",
    "    passes 4·N·tokens, frozen encoders 2·N·tokens, attention 4·L·s·h per token forward (x3 with backward),",
    "    checkpointing one more forward; decoding: every step of a batch reads all weights at 40% of the bandwidth",
    "  sequences: media tokens (CLIP 257/577, Whisper 50/s of clip, video frames x tokens with concat, Chameleon 1026)",
    "    + a planning length of each dataset's prompt and answer (mmcl.jobs.cost.TEXT_TOKENS)",
    "  micro: train.micro_batch_size (all training jobs), capped at the process's share of the batch",
)


class Estimator:
    """Sequences, memory and FLOPs of one backbone's jobs under ``params``."""

    def __init__(self, params: Params, backbone: str, supervised_only: bool = SUPERVISED_ONLY):
        self.params, self.name = params, backbone
        self.suite = params.suite()
        self.config = params.backbones[backbone]
        self.shape = backbone_shape(backbone, self.config, self.suite, params.path)
        if self.config.feature_cache and self.config.freeze_encoders and self.shape.encoders:
            self.shape = replace(self.shape, cached_media=True)
        self.precision = precision_of(params.train.precision)
        self.eager = self.config.attn_implementation == "eager"
        self.supervised_only = supervised_only

    def adapter(self, task: str) -> str | None:
        config = self.suite.tasks.get(task)
        return self.params.datasets[config.dataset].adapter if config and config.dataset else None

    def text(self, task: str) -> TextLength:
        return TEXT_TOKENS.get(self.adapter(task)) or TEXT_TOKENS.get(self.suite.tasks[task].family, TEXT_TOKENS["qa"])

    def media_positions(self, task: str, modality: str | None) -> int:
        """LLM positions one input of ``modality`` occupies in ``task``: audio its clip's share of the window."""
        full = self.shape.media_tokens.get(modality, 0) if modality else 0
        if modality != "audio" or not full:
            return full
        config = self.suite.tasks.get(task)
        seconds = self.suite.world.audio_seconds if config and not config.dataset else None
        seconds = AUDIO_SECONDS.get(self.adapter(task), seconds)
        window = full / self.shape.audio_positions_per_s
        return window_positions(full, None if seconds is None else min(1.0, seconds / window))

    def rows(self, task: str, count: int, text: TextLength | None = None, modality: str | None = "task") -> Rows:
        """``count`` sequences of ``task`` (or, with ``text``/``modality``, of that text and media)."""
        text = text or self.text(task)
        modality = self.suite.tasks[task].modality if modality == "task" else modality
        media = self.media_positions(task, modality)
        return Rows(count, media + text.prompt + text.answer + SPECIAL_TOKENS, text.answer + 1, media, modality)

    def training_memory(
        self, training: Training, rows: list[Rows], checkpointing: bool, shards: tuple[int, int] = (1, 1)
    ) -> Memory:
        """Peak of one GPU's training step over ``rows``, with the CUDA context."""
        memory = training_memory(
            self.shape,
            training,
            rows,
            self.precision,
            eager=self.eager,
            checkpointing=checkpointing,
            shards=shards,
            supervised_only=self.supervised_only,
        )
        return replace(memory, other=memory.other + RUNTIME_GIB * GIB)

    def inference_memory(self, rows: Rows, new_tokens: int, logit_positions: int, logit_bytes: int) -> Memory:
        """Peak of a forward without autograd: the weights, the KV cache of every block, one block's
        activations at a time, and ``logit_bytes`` per logit of ``logit_positions`` positions per row."""
        b, p = self.shape, self.precision.activation
        cache = 2 * b.llm.layers * b.llm.kv_width * rows.count * (rows.positions + new_tokens) * p
        forward = replace(rows, trained=False)
        activations = llm_activations(b.llm, forward, p, self.eager, False) + encoder_activations(b, forward, p)
        return Memory(
            weights=total_params(self.shape) * self.precision.frozen,
            activations=cache + activations,
            logits=rows.count * logit_positions * b.llm.vocab * logit_bytes,
            other=RUNTIME_GIB * GIB,
        )

    def training_flops(self, training: Training, rows: Rows, checkpointing: bool) -> float:
        """One forward and backward of ``rows`` (forward only when they are not trained)."""
        llm = self.shape.llm
        forward = forward_flops(llm, rows.tokens, rows.positions)
        if not rows.trained:
            return forward + self.media_flops(rows, training, trained=False)
        weights = 2 * llm.active_params * rows.tokens
        attention = forward - weights
        # backward: the activations' gradients everywhere (2·N), the weights' where the LLM trains (2·N more)
        flops = forward + weights * (2 if training.llm else 1) + 2 * attention
        if training.adapter:
            flops += 6 * training.adapter.params * rows.tokens
        return flops + (forward if checkpointing else 0) + self.media_flops(rows, training, trained=True)

    def media_flops(self, rows: Rows, training: Training, trained: bool) -> float:
        """The encoder's forward (and backward when it trains) and the projector's, for the rows' media."""
        b = self.shape
        encoder = b.encoder_of(rows.modality) if rows.modality else None
        if encoder is None:
            return 0.0
        inputs = rows.count * b.encoder_inputs[rows.modality]
        passes = 0 if b.cached_media else 3 if trained and not b.frozen_encoders else 1
        flops = passes * forward_flops(encoder, inputs * encoder.tokens, encoder.tokens)
        projector_passes = 3 if trained and training.projectors != "none" else 1
        return flops + projector_passes * 2 * b.projectors[rows.modality] * rows.count * rows.media

    def budget(self, kind: str, gpu: Gpu) -> tuple[float, bool]:
        """(GiB a job of this resources kind may use, whether gpu_mem_gb sets it)."""
        limit = getattr(self.params.resources, kind).gpu_mem_gb
        return (limit if limit is not None else gpu.memory_gib), limit is not None


def gpu_of(resources: JobResources, override: str | None) -> Gpu:
    """The GPU named by ``override`` or the resources' gpu_type (e.g. a100, h100-80gb), else the default."""
    name = (override or resources.gpu_type or DEFAULT_GPU).lower()
    return next((gpu for key, gpu in GPUS.items() if key in name), GPUS[DEFAULT_GPU])


def largest_fitting(fits: Callable[[int], bool], batch: int) -> int | None:
    """The largest divisor of ``batch`` (whole accumulation steps) for which ``fits`` holds, or None."""
    return next((m for m in range(batch, 0, -1) if batch % m == 0 and fits(m)), None)


@dataclass(frozen=True)
class TrainingKind:
    """A training kind of job: its stages (each with whether it continues a previous one) and batch."""

    kind: str  # train_base | align | train_stage
    method: str | None
    training: Training
    stages: list[tuple[Stage, bool]]
    steps: Callable[[Stage], dict[str, int]]  # optimizer steps of each task of a stage
    batch: int  # global
    processes: int
    repeats: int  # jobs per stage key (seeds)


def training_job(est: Estimator, spec: TrainingKind, gpu: Gpu) -> JobEstimate:
    """The peak of the largest stage of a training kind, the GPU-hours of all its jobs, and the fix."""
    train, training = est.params.train, spec.training
    resources = "train_stage" if spec.kind == "train_stage" else "train_base"
    per_process = spec.batch // spec.processes
    micro = min(train.micro_batch_size or per_process, per_process)
    n = spec.processes
    distributed = est.params.resources.distributed if n > 1 else "ddp"
    shards = {"ddp": (1, 1), "deepspeed_zero2": (1, n), "fsdp": (n, n)}[distributed]
    budget, checked = est.budget(resources, gpu)

    def step_rows(task: str, continued: bool, m: int) -> list[Rows]:
        rows = [est.rows(task, m)]
        for extra in training.extras if continued else ():
            part = est.rows(task, extra.rows, extra.text, extra.modality)
            rows.append(
                replace(part, trained=extra.trained, answer=part.positions if extra.every_position else part.answer)
            )
        return rows

    def peak(m: int, checkpointing: bool) -> Memory:
        memories = [
            est.training_memory(training, step_rows(task, continued, m), checkpointing, shards)
            for stage, continued in spec.stages
            for task in stage.tasks
        ]
        if training.pass_rows:  # EWC's Fisher: forward and backward of its own batches, after the stage
            memories += [
                est.training_memory(training, [est.rows(task, training.pass_rows)], checkpointing, shards)
                for stage, _ in spec.stages
                for task in stage.tasks
            ]
        return max(memories, key=lambda memory: memory.total)

    # the loss runs its extra sequences with every micro-batch of every process
    runs = spec.processes * (per_process // micro)
    flops = 0.0
    for stage, continued in spec.stages:
        # a joint stage's batches mix its tasks, each padded to the longest of them
        longest = max(stage.tasks, key=lambda task: est.rows(task, 1).positions)
        for task, steps in spec.steps(stage).items():
            batch, *extras = step_rows(longest if len(stage.tasks) > 1 else task, continued, spec.batch)
            step = est.training_flops(training, batch, train.gradient_checkpointing)
            step += runs * sum(est.training_flops(training, part, train.gradient_checkpointing) for part in extras)
            flops += steps * step
    memory = peak(micro, train.gradient_checkpointing)
    job = JobEstimate(
        kind=spec.kind,
        backbone=est.name,
        method=spec.method,
        resources=resources,
        count=len(spec.stages) * spec.repeats,
        micro_batch=micro,
        positions=max(est.rows(task, 1).positions for stage, _ in spec.stages for task in stage.tasks),
        memory=memory,
        gpu_hours=flops * spec.repeats / gpu.flops / 3600,
        budget_gib=budget,
        checked=checked,
    )
    if not job.fits:
        job.fix = training_fix(est, spec, lambda m, c: peak(m, c).total <= budget * GIB, per_process)
    return job


def training_fix(est: Estimator, spec: TrainingKind, fits: Callable[[int, bool], bool], per_process: int) -> str:
    """The micro-batch that fits, without and with gradient checkpointing; else what else to change."""
    checkpointing = est.params.train.gradient_checkpointing
    plain = None if checkpointing else largest_fitting(lambda m: fits(m, False), per_process)
    recomputed = largest_fitting(lambda m: fits(m, True), per_process)
    if plain and recomputed and recomputed > plain:
        return (
            f"set train.micro_batch_size <= {plain}, or train.gradient_checkpointing: true "
            f"(then micro_batch_size <= {recomputed} fits)"
        )
    if plain:
        return f"set train.micro_batch_size <= {plain}"
    if recomputed:
        on = "" if checkpointing else "train.gradient_checkpointing: true and "
        return f"set {on}train.micro_batch_size <= {recomputed}"
    fisher = (
        f" (nor EWC's Fisher batches: lower methods.{spec.method}.fisher_batch_size)" if spec.training.pass_rows else ""
    )
    if spec.kind == "train_stage":
        more = "more GPUs (resources.train_stage.gpus) with resources.distributed: fsdp, or larger ones"
    else:
        more = "use a GPU with more memory (this job runs on one GPU)"
    return f"even one sample per forward does not fit{fisher}: {more}"


def split_size(params: Params, task: str, assumed: list[str], split: str = "test") -> int:
    """Samples of a task's split: the converted dataset's count, or the generated size; a test split is capped
    by evaluation.max_samples."""
    suite = params.suite()
    config = suite.tasks[task]
    cap = params.evaluation.max_samples if split == "test" else None
    if config.dataset is None:
        count = getattr(suite.sizes, split)
    elif (summary := Path(paths.dataset_summary(config.dataset))).is_file():
        count = json.loads(summary.read_text())["splits"][split]["samples"]
    else:
        count = ASSUMED_TEST_SAMPLES * (10 if split == "train" else 1)
        if cap is None and task not in assumed:
            assumed.append(task)
    return min(count, cap) if cap else count


def encode_media_job(est: Estimator, gpu: Gpu, assumed: list[str]) -> JobEstimate:
    """The feature cache of a backbone: every train and test media file through its frozen encoder, once."""
    b, p = est.shape, est.precision.activation
    batch = est.params.evaluation.batch_size
    budget, checked = est.budget("evaluate", gpu)
    flops, layer = 0.0, 0.0
    for task, config in est.suite.tasks.items():
        if (encoder := b.encoder_of(config.modality)) is None:
            continue
        files = sum(split_size(est.params, task, assumed, split) for split in ("train", "test"))
        inputs = files * b.encoder_inputs[config.modality]
        flops += forward_flops(encoder, inputs * encoder.tokens, encoder.tokens)
        per_batch = batch * b.encoder_inputs[config.modality] * encoder.tokens
        layer = max(layer, per_batch * block_bytes(encoder, p, False, encoder.tokens))
    encoders = sum(e.params for e in b.encoders.values())
    memory = Memory(weights=encoders * est.precision.frozen, activations=layer, other=RUNTIME_GIB * GIB)
    longest = max(e.tokens for e in b.encoders.values())
    return JobEstimate(
        "encode_media",
        est.name,
        None,
        "evaluate",
        1,
        batch,
        longest,
        memory,
        flops / gpu.flops / 3600,
        budget,
        checked,
        note="the frozen encoders over every media file, once; every other job reads the cache",
    )


def evaluate_job(est: Estimator, cells: Counter, jobs: int, gpu: Gpu, assumed: list[str]) -> JobEstimate:
    """The predictions of ``cells`` (task -> checkpoints scored on it, ``evaluation.cells``), ``jobs`` jobs
    (one per method and seed, and the base model's): per checkpoint and task a prefill, then decoding."""
    params, evaluation = est.params, est.params.evaluation
    tasks = [task for task in est.suite.evaluated_tasks if cells[task]]
    budget, checked = est.budget("evaluate", gpu)

    def peak(batch: int) -> Memory:
        memories = []
        for task in tasks:
            rows = est.rows(task, batch)
            scored = rows.positions if est.suite.tasks[task].family in LIKELIHOOD_FAMILIES else 1
            memories.append(est.inference_memory(rows, evaluation.max_new_tokens, scored, est.precision.activation + 4))
        return max(memories, key=lambda memory: memory.total)

    seconds = 0.0
    weight_bytes = total_params(est.shape) * est.precision.frozen
    for task in tasks:
        samples = split_size(params, task, assumed)
        rows = est.rows(task, samples)
        prefill = forward_flops(est.shape.llm, rows.tokens, rows.positions) + est.media_flops(rows, Training(), False)
        decoding = -(-samples // evaluation.batch_size) * evaluation.max_new_tokens * weight_bytes
        seconds += cells[task] * (prefill / gpu.flops + decoding / (gpu.bandwidth_tbs * 1e12 * EFFICIENCY))
    longest = max(est.rows(task, 1).positions for task in tasks) + evaluation.max_new_tokens
    job = JobEstimate(
        kind="evaluate",
        backbone=est.name,
        method=None,
        resources="evaluate",
        count=jobs,
        micro_batch=evaluation.batch_size,
        positions=longest,
        memory=peak(evaluation.batch_size),
        gpu_hours=seconds / 3600,
        budget_gib=budget,
        checked=checked,
        note=f"{sum(cells.values())} (checkpoint, task) cells, evaluation.cells: {evaluation.cells}",
    )
    if not job.fits:
        batch = largest_fitting(lambda b: peak(b).total <= budget * GIB, evaluation.batch_size)
        job.fix = f"set evaluation.batch_size <= {batch}" if batch else "use a GPU with more memory"
    return job


def teach_job(
    est: Estimator, method: str, training: Training, stages: list[Stage], repeats: int, gpu: Gpu
) -> JobEstimate:
    """The previous model's forward over the method's pool, 32 sequences at a time, keeping the top-K of every
    position's logits: the head's output, the attended positions' copy and its fp32 cast."""
    budget, checked = est.budget("evaluate", gpu)
    batch = min(TEACH_BATCH, training.teach_rows)
    memories, flops = [], 0.0
    for stage in stages:
        task = stage.tasks[-1]
        rows = est.rows(task, batch)
        scored = rows.answer if est.supervised_only else rows.positions
        memories.append(est.inference_memory(rows, 0, scored, 2 * est.precision.activation + 4))
        pool = est.rows(task, training.teach_rows)
        flops += forward_flops(est.shape.llm, pool.tokens, pool.positions) + est.media_flops(pool, training, False)
    longest = max(est.rows(stage.tasks[-1], 1).positions for stage in stages)
    memory = max(memories, key=lambda m: m.total)
    job = JobEstimate(
        kind="teach",
        backbone=est.name,
        method=method,
        resources="evaluate",
        count=len(stages) * repeats,
        micro_batch=batch,
        positions=longest,
        memory=memory,
        gpu_hours=flops * repeats / gpu.flops / 3600,
        budget_gib=budget,
        checked=checked,
    )
    job.fix = None if job.fits else "use a GPU with more memory (a teach job runs 32 sequences per forward)"
    return job


def lm_eval_job(est: Estimator, count: int, gpu: Gpu) -> JobEstimate:
    """lm-evaluation-harness on the LLM alone: the log-likelihood of every position of each request."""
    settings, llm, p = est.config.lm_eval, est.shape.llm, est.precision.activation
    budget, checked = est.budget("evaluate", gpu)

    def peak(batch: int) -> Memory:
        rows = Rows(batch, LM_EVAL_POSITIONS, 0, trained=False)
        cache = 2 * llm.layers * llm.kv_width * rows.tokens * p
        return Memory(
            weights=llm.params * est.precision.frozen,
            activations=cache + llm_activations(llm, rows, p, est.eager, False),
            logits=rows.tokens * llm.vocab * (p + 8),  # the harness's fp32 log-softmax over every position
            other=RUNTIME_GIB * GIB,
        )

    tokens = LM_EVAL_TOKENS_PER_TASK * len(settings.tasks())
    hours = forward_flops(llm, tokens, LM_EVAL_POSITIONS // 2) / gpu.flops / 3600
    job = JobEstimate(
        kind="lm_eval",
        backbone=est.name,
        method=None,
        resources="evaluate",
        count=count,
        micro_batch=settings.batch_size,
        positions=LM_EVAL_POSITIONS,
        memory=peak(settings.batch_size),
        gpu_hours=hours * count,
        budget_gib=budget,
        checked=checked,
    )
    if not job.fits:
        batch = largest_fitting(lambda b: peak(b).total <= budget * GIB, settings.batch_size)
        job.fix = f"set backbones.{est.name}.lm_eval.batch_size <= {batch}" if batch else "use a GPU with more memory"
    return job


def base_jobs(est: Estimator, gpu: Gpu) -> list[JobEstimate]:
    """The base model (stage 0, for backbones that have one) and the alignment stage: once per backbone."""
    suite, jobs = est.suite, []
    stage0 = BACKBONES.get(est.config.family)(est.config).stage0()
    if stage0 is None:
        budget, checked = est.budget("train_base", gpu)
        note = "no training: assembles and saves the pretrained parts"
        jobs.append(
            JobEstimate("train_base", est.name, None, "train_base", 1, 0, 0, Memory(), 0, budget, checked, note=note)
        )
    else:
        task = (suite.text_tasks or list(suite.tasks))[0]
        training = Training(llm=True, projectors="none")
        jobs.append(training_job(est, single_stage("train_base", training, task, stage0.steps, stage0.batch_size), gpu))
    if (alignment := suite.alignment) is not None:
        spec = single_stage(
            "align", Training(projectors="stage"), alignment.task, alignment.steps, alignment.batch_size
        )
        jobs.append(training_job(est, spec, gpu))
    return jobs


def single_stage(kind: str, training: Training, task: str, steps: int, batch: int) -> TrainingKind:
    """A job that trains one task once per backbone, on one GPU (stage 0, the alignment stage)."""
    stage = Stage(task, (task,), None, (task,))
    return TrainingKind(kind, None, training, [(stage, False)], lambda _: {task: steps}, batch, 1, 1)


def plan(params: Params, what: str = "grid", gpu: str | None = None, kinds: tuple[str, ...] = RESOURCE_KINDS) -> Plan:
    """The estimates of the grid's GPU jobs, of the resources ``kinds`` asked for."""
    grid, resources = params.grid, params.resources
    gpus = {kind: gpu_of(getattr(resources, kind), gpu) for kind in kinds}
    result = Plan(params, what, gpus)
    seeds = len(grid.seeds)
    for backbone in grid.backbones:
        est = Estimator(params, backbone)
        if "train_base" in kinds:
            result.jobs += base_jobs(est, gpus["train_base"])
        if est.shape.cached_media and "evaluate" in kinds:
            result.jobs.append(encode_media_job(est, gpus["evaluate"], result.assumed_samples))
        checkpoints, predict_jobs = 1, 1  # the base model's evaluation
        cells = Counter(est.suite.evaluated_tasks)  # task -> checkpoints scored on it: the base model on every task
        orders = [params.order(order) for order in grid.orders]
        for method in grid.methods:
            config = params.methods[method]
            cl_method = METHODS.get(config.type)(config)
            stages = {s.key: s for order in grid.orders for s in plan_stages(cl_method.schedule, params.order(order))}
            if not stages:
                continue
            checkpoints += len(stages) * seeds
            predict_jobs += seeds
            for stage in stages.values():
                scored = scored_tasks(stage, orders, est.suite.evaluated_tasks, params.evaluation.cells)
                cells.update({task: seeds for task in scored})
            training = training_of(params, method, est.shape)
            if "train_stage" in kinds:
                spec = TrainingKind(
                    kind="train_stage",
                    method=method,
                    training=training,
                    stages=[(stage, stage.previous is not None) for stage in stages.values()],
                    steps=lambda stage: stage_steps(params, stage),
                    batch=params.train.batch_size,
                    processes=max(resources.train_stage.gpus, 1),
                    repeats=seeds,
                )
                result.jobs.append(training_job(est, spec, gpus["train_stage"]))
            taught = [stage for stage in stages.values() if "teacher" in cl_method.required_artifacts(stage)]
            if taught and training.teach_rows and "evaluate" in kinds:
                result.jobs.append(teach_job(est, method, training, taught, seeds, gpus["evaluate"]))
        if "evaluate" in kinds:
            result.jobs.append(evaluate_job(est, cells, predict_jobs, gpus["evaluate"], result.assumed_samples))
            if est.config.lm_eval is not None:
                result.jobs.append(lm_eval_job(est, checkpoints, gpus["evaluate"]))
    return result


def stage_steps(params: Params, stage: Stage) -> dict[str, int]:
    """Optimizer steps of each task of a stage (a joint stage trains the steps of all its tasks)."""
    return {task: params.train.task_steps.get(task, params.train.steps) for task in stage.tasks}


def check_memory(params: Params) -> None:
    """Fail when a job's estimated peak exceeds its resources' gpu_mem_gb. Nothing to do, and no shape to
    look up, when no kind of GPU job sets one (the default params.yaml)."""
    if kinds := tuple(kind for kind in RESOURCE_KINDS if getattr(params.resources, kind).gpu_mem_gb is not None):
        plan(params, kinds=kinds).check()


def print_plan(params: Params, what: str, gpu: str | None = None, log=print) -> None:
    """``mmcl plan``: print the plan, then raise the ConfigError of the first checked job that does not fit."""
    if gpu is not None and not any(key in gpu.lower() for key in GPUS):
        raise ConfigError(f"plan: --gpu {gpu!r}: the known GPUs are {', '.join(GPUS)}")
    result = plan(params, what, gpu)
    log(result.text())
    result.check()
