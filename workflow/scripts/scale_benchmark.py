"""Throughput of mmcl's training loop on the real presets' architectures, against a bare PyTorch loop, and what
the feature cache and the supervised-only LM head save.

Usage (repository root, environment active; nothing is downloaded, every weight is random):

    python workflow/scripts/scale_benchmark.py [--preset moincl-real|llava-real|mode-real|all] [--layers N]
        [--steps N] [--rounds N] [--seconds S] [--batch-size N] [--files N] [--quick] [--out FILE]

Models. Each preset's backbone is built at its real width from the published config values in
``mmcl.models.shapes`` (``config_kwargs``), with ``--layers`` decoder layers (default: all of them):

- moincl-real: Llama-3.2-1B with CLIP ViT-L/14 (224 px) for images and video frames (mean over frames) and
  Whisper-base's encoder for audio, as a ``MultimodalLM``; method ``lora`` (the preset's r 8 on q/v_proj).
  The audio encoder and its projector are in the model, but no audio sample is trained on: one 30 s clip is
  1500 LLM positions, which would make a CPU step about 5x longer than the image and video ones.
- llava-real: Pythia-410M with CLIP ViT-L/14-336, as a ``MultimodalLM``; method ``finetune`` (LLaVA-1.5's
  full fine-tuning, the study's first method).
- mode-real: Chameleon-7B's shape with its VQ-GAN image tokenizer (512 px -> 1024 codes), as a ``UnifiedLM``
  (``mmcl.models.unified_lm.chameleon_model`` on a ``ChameleonForConditionalGeneration`` built from its
  config); method ``lora`` (MoDE's r 8 on the MLP projections).

The encoders (CLIP, Whisper, the VQ-GAN) keep their full depth: the data-path figure needs it. ``--quick``
(the test's smoke mode, not for figures) cuts them to one layer and images to a quarter of their side.
Each LLM's vocabulary is its config's ``vocab_size`` plus mmcl's 4 prompt tokens (``EXTRA_SPECIAL_TOKENS``),
as the ``hf``/``unified`` families resize it; the tokenizer is a word-level one over the synthetic words
(``mmcl.data.vocab.build_word_tokenizer``; for Chameleon its 8192 image-code tokens and markers first, so
that they form the contiguous block ``UnifiedLM`` needs). The method is applied as ``mmcl train-stage``
does: ``prepare_model``, then ``train_only(trainable_parameters)``, and ``fit`` with its ``loss``.

Data. ``--files`` synthetic media files per shape in a temporary directory: JPEGs at each encoder's
resolution, 8-frame MP4 clips (PyAV, H.264) at 224 px; one captioning or QA sample per file, of random
words in the order of the datasets' lengths (``PRESETS``: Flickr30k's 12-word and MSR-VTT's 9-word captions,
a ScienceQA answer letter). Training reads the frozen encoders' outputs from a feature
cache (``mmcl.engine.features``), as the presets do (``feature_cache: true``): the encoders do not run
during a step. Video rows are the mean of 8 frames (moincl-real samples 4: the same 257 LLM positions).

Step time. Both loops train the same model on the same batches (``StepSampler``, same seed): ``fit`` with
the preset's settings (lr, schedule, warmup, weight decay, grad clip, log_every; batch ``--batch-size``; on
CUDA the preset's precision and gradient checkpointing, GPU memory settings: on CPU fp32 and none; one
forward per step, not the preset's ``micro_batch_size``, which the bare loop would not accumulate) and the
bare loop: plain DataLoader, forward, ``loss.backward()``, AdamW step (``fit``'s arguments) and
``zero_grad`` (bf16 autocast on CUDA, as Accelerate's). A step is timed between the loss computations of
two consecutive steps (backward, optimizer step and zero_grad of one, loading, collating and forward of the
next; the device synchronised at each stamp), so every run of ``--steps`` N steps gives N - 1 steps;
``fit``'s set-up (Accelerator, optimizer, DataLoader) is outside. One untimed bare step warms up, then
rounds run both loops, one run each, in ABBA order (mmcl, bare | bare, mmcl | ...): ``--rounds`` rounds,
and more (an even number) while the preset's timing has taken less than ``--seconds``. On 2 CPU cores
shared with other jobs a step's time swings by up to 3x as their load comes and goes, within minutes: the
ratio is therefore taken within each round, between runs seconds apart, and its median over the rounds is
the figure (the table also gives the lowest and highest round's).

    t_mmcl, t_bare = medians of each loop's steps (all rounds)
    samples/s = B / t_mmcl                    B: samples per batch
    tokens/s  = mean_batches(T) / t_mmcl      T = sum of attention_mask (padding excluded)
    ratio     = median_rounds(median_round(mmcl steps) / median_round(bare steps))     target <= 1.10

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the preset's training (reset before it); on
CPU the process's peak resident memory (VmHWM, reset through /proc/self/clear_refs before the training;
the process also holds the encoders the data path and the other presets use).

FLOPs and MFU (CUDA). Model FLOPs of one step, per batch (mean over the timed batches):

    F = 6 N_tr T + 4 N_fg T + 2 N_ff T + c h V S + sum_m (4 P_m1 + 6 P_m2) M_m + 12 L a sum_i s_i^2

- N_tr: trained decoder parameters (every LLM parameter but the input embedding, the LM head and the VQ-GAN;
  LoRA's A and B included): forward 2, backward 4 (input and weight gradients) per parameter and token.
- N_fg: frozen decoder parameters the gradient passes back through (4: forward and input gradient): all of
  them when the inputs need a gradient (trained projectors), else those after the first trained parameter
  in the decoder's order; N_ff: the others (forward only, 2).
- c = 6 when the LM head trains (finetune; tied to the embedding or not), else 4; h the hidden width, V the
  vocabulary, S the supervised positions (``supervised_rows``): the LM head runs there only.
- P_m1, P_m2: the two linear layers of modality m's projector, M_m its media positions in the batch: the
  first layer's input (the cached features) needs no gradient, hence 4. The encoders cost 0 (cached).
- Attention: 12 L a s^2 per sequence of real length s (L layers, a = heads x head_dim): the scores and the
  weighted sum, 2 s^2 a each per layer forward, x3 with backward; the full square, as PaLM's MFU counts it
  (causal masking's half is not subtracted). Norms, rotary embeddings, softmax and the loss are omitted, and
  so is the forward that gradient checkpointing recomputes (model FLOPs, not hardware FLOPs).

    MFU = F / t_mmcl / peak      peak: the device's dense bf16 TFLOP/s (``PEAK_TFLOPS``; unknown: n/a)

Evaluation: one batch of the first B samples through ``model.generate`` (greedy, ``EVAL_TOKENS`` new tokens).

Data path (what the LLM waits for per sample, one worker, one process). For each of image 224 px (CLIP
ViT-L/14), image 336 px (ViT-L/14-336) and video (8 frames of 224 px through ViT-L/14, mean over frames):

    t_decode = time of ``MultimodalLM.encode_files`` on one file (decode with Pillow/PyAV, the CLIP image
               processor, the encoder's forward at batch 1, on CUDA when there is one), median over the
               files after ``encode_media``'s first call (which sizes the shards: the warm-up)
    t_cache  = time of ``FeatureStore.load`` of one file's row, mean over passes through the files (``CACHE_SECONDS``)
    samples/s = 1 / t;   ratio = t_decode / t_cache     target >= 10

The cache is written by ``encode_media`` with batch 1 (its manifest by hand: ``write_manifest`` fingerprints a
base directory's encoder files, which a random-init model does not have), so its shards are read from the page
cache; from a cold disk a row costs its size over the disk's bandwidth (image 224: 1 MB, 1 ms at 1 GB/s).
The clips hold 8 frames: a real clip decodes every frame up to the last one sampled, so video costs more.

LM-head FLOPs per batch (forward only, mean over the timed batches): every position 2 h V (B x L_pad), as a
forward without labels computes logits on the padded batch, against the supervised positions only 2 h V S;
removed = 1 - S / (B x L_pad): the prompt's share (T - S) / (B x L_pad) (media, instruction and each sequence's
last position, which predicts nothing) and the padding's, the rest.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from torch.utils.data import DataLoader

from mmcl.data.families import suite_families
from mmcl.data.media import MediaProcessor
from mmcl.data.records import Sample
from mmcl.data.vocab import EXTRA_SPECIAL_TOKENS, build_word_tokenizer
from mmcl.engine.batching import Collator, InstructionDataset
from mmcl.engine.features import MANIFEST, FeatureStore, encode_media
from mmcl.engine.loop import FitSettings, fit, train_only
from mmcl.engine.sampling import StepSampler
from mmcl.jobs.params import load_params
from mmcl.methods import METHODS
from mmcl.models.mllm import AudioEncoder, ImageEncoder, MultimodalLM, enable_gradient_checkpointing, supervised_rows
from mmcl.models.shapes import config_kwargs
from mmcl.models.unified_lm import CHAMELEON_END, CHAMELEON_START, chameleon_model

ROOT = Path(__file__).resolve().parents[2]
CLIP_224, CLIP_336 = "openai/clip-vit-large-patch14", "openai/clip-vit-large-patch14-336"
VIDEO_FRAMES = 8
EVAL_TOKENS = 4
CACHE_SECONDS = 1.0  # reading the cache is timed over passes through the files for this long
RATIO_TARGET, DATA_PATH_TARGET = 1.10, 10.0
# Dense bf16 tensor-core peaks (TFLOP/s), matched in this order against torch.cuda.get_device_name().
PEAK_TFLOPS = (
    ("H100 PCIe", 756),
    ("H100 NVL", 835),
    ("H100", 989),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H200", 989),
    ("B200", 2250),
    ("A100", 312),
    ("L40S", 362),
    ("L40", 181),
    ("L4", 121),
)
clock = time.perf_counter


@dataclass(frozen=True)
class Task:
    name: str  # the preset suite's task the samples stand for (its family prompts and targets them)
    modality: str
    media: str  # the media directory (and cache shape) its files are in
    prompt_words: int
    answer_words: int


@dataclass(frozen=True)
class Preset:
    backbone: str
    method: str
    cache: str  # feature cache the training reads ("vq": its own, written with the model)
    tasks: tuple[Task, ...]


PRESETS = {
    "moincl-real": Preset(
        "moincl-llama-3.2-1b",
        "lora",
        "clip224",
        (Task("flickr30k", "image", "image224", 6, 12), Task("msrvtt", "video", "video224", 6, 9)),
    ),
    "llava-real": Preset("llava-pythia-410m", "finetune", "clip336", (Task("instruct", "image", "image336", 24, 48),)),
    "mode-real": Preset("anole-7b", "lora", "vq", (Task("scienceqa", "image", "image512", 40, 1),)),
}
# (label, cache, modality) of the data-path figure's three shapes
DATA_PATH = (
    ("image 224 px", "clip224", "image"),
    ("image 336 px", "clip336", "image"),
    ("video 8x224 px", "clip224", "video"),
)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def stamp(stamps: list[float]) -> None:
    sync()
    stamps.append(clock())


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    elif os.path.exists("/proc/self/clear_refs"):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (Linux >= 4.0)


def peak_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    if os.path.exists("/proc/self/status"):
        with open("/proc/self/status") as status:
            line = next(ln for ln in status if ln.startswith("VmHWM:"))
        return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**30  # no /proc (macOS): bytes, and not reset


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU ({platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores)"


def peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((tflops * 1e12 for key, tflops in PEAK_TFLOPS if key in name), None)


# --- synthetic media and samples ---


def picture(side: int, rng: np.random.Generator):
    """A smooth random picture (noise upsampled), so that encoded sizes and decoding resemble photos'."""
    from PIL import Image

    small = Image.fromarray(rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8))
    return small.resize((side, side), Image.BILINEAR)


def write_images(folder: Path, side: int, count: int, rng: np.random.Generator) -> list[Path]:
    folder.mkdir(parents=True)
    paths = [folder / f"{index}.jpg" for index in range(count)]
    for path in paths:
        picture(side, rng).save(path, quality=90)
    return paths


def write_clips(folder: Path, side: int, count: int, rng: np.random.Generator) -> list[Path]:
    import av

    folder.mkdir(parents=True)
    paths = []
    for index in range(count):
        path = folder / f"{index}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=VIDEO_FRAMES)
            stream.width = stream.height = side
            stream.pix_fmt = "yuv420p"
            base = np.asarray(picture(side, rng))
            for frame in range(VIDEO_FRAMES):  # the picture drifting sideways
                pixels = np.ascontiguousarray(np.roll(base, 4 * frame, axis=1))
                container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
            container.mux(stream.encode())
        paths.append(path)
    return paths


WORDS = [f"w{i}" for i in range(300)]


def samples_of(task: Task, files: list[str], rng: random.Random) -> list[Sample]:
    """One sample per file: an instruction of ``prompt_words`` words, three references around ``answer_words``."""

    def words(count: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(max(1, count)))

    lengths = (task.answer_words - 2, task.answer_words, task.answer_words + 2)
    return [
        Sample(f"{task.name}-{i}", task.name, task.modality, words(task.prompt_words), [words(n) for n in lengths], [f])
        for i, f in enumerate(files)
    ]


def word_tokenizer(folder: Path, first: list[str] = ()):
    (folder / "vocab.txt").write_text("\n".join([*first, *WORDS]) + "\n")
    build_word_tokenizer(folder / "vocab.txt", folder / "tokenizer")
    return transformers.AutoTokenizer.from_pretrained(folder / "tokenizer")


# --- models ---


def clip_tower(hub_id: str, quick: bool):
    """CLIP's vision tower at full depth (one layer and a quarter of the side with ``quick``) and its processor."""
    vision = config_kwargs(hub_id).kwargs["vision_config"]
    if quick:
        vision |= {"num_hidden_layers": 1, "image_size": vision["image_size"] // 4}
    side = vision["image_size"]
    processor = transformers.CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    return ImageEncoder(transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**vision))), processor, side


def causal_lm(hub_id: str, layers: int | None, tokenizer, **extra):
    known = config_kwargs(hub_id)
    kwargs = known.kwargs | extra
    kwargs["num_hidden_layers"] = layers or kwargs["num_hidden_layers"]
    kwargs["vocab_size"] += len(EXTRA_SPECIAL_TOKENS)  # what the hf/unified families resize the embeddings to
    ids = {f"{t}_token_id": getattr(tokenizer, f"{t}_token_id") for t in ("bos", "eos", "pad")}
    config = transformers.AutoConfig.for_model(known.model_type, **kwargs, **ids)
    if known.model_type == "chameleon":  # the class with the VQ-GAN (AutoModelForCausalLM's has none)
        return transformers.ChameleonForConditionalGeneration(config)
    return transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")


def carrier(tower: ImageEncoder, tokenizer) -> MultimodalLM:
    """A MultimodalLM around ``tower`` with a one-layer 8-wide LLM: ``encode_media`` needs a model, never its LLM."""
    config = transformers.LlamaConfig(
        hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=1, vocab_size=len(tokenizer)
    )
    return MultimodalLM(transformers.LlamaForCausalLM(config), tokenizer, tower, None, video_temporal="mean")


def multimodal(preset: Preset, params, layers, tower: ImageEncoder, tokenizer, quick: bool) -> MultimodalLM:
    backbone = params.backbones[preset.backbone]
    llm = causal_lm(backbone.llm, layers, tokenizer)
    audio = None
    if backbone.audio_encoder:
        whisper = config_kwargs(backbone.audio_encoder).kwargs
        if quick:
            whisper |= {"encoder_layers": 1, "decoder_layers": 1}
        audio = AudioEncoder(transformers.WhisperModel(transformers.WhisperConfig(**whisper)))
    model = MultimodalLM(
        llm,
        tokenizer,
        tower,
        audio,
        projector_hidden=backbone.projector_hidden,
        video_temporal=backbone.video.temporal,
        freeze_encoders=backbone.freeze_encoders,
    )
    if audio is not None:  # not cached: a 30 s clip's positions, one per 2 mel frames
        model.num_media_tokens["audio"] = audio.model.config.max_source_positions
    return model


def chameleon(preset: Preset, params, layers, folder: Path, quick: bool):
    """A UnifiedLM of Chameleon's shape: its vocabulary map names the tokenizer's image-code tokens."""

    def code_token(code: int) -> str:  # Chameleon's names: IMGIMG + the code's digits as letters A-J + Z
        return "IMGIMG" + "".join(chr(ord("A") + int(d)) for d in str(code)) + "Z"

    vq = transformers.ChameleonVQVAEConfig()
    tokenizer = word_tokenizer(folder, [*map(code_token, range(vq.num_embeddings)), CHAMELEON_START, CHAMELEON_END])
    vq_config = vq.to_dict() | ({"resolution": vq.resolution // 4} if quick else {})
    llm = causal_lm(
        params.backbones[preset.backbone].model,
        layers,
        tokenizer,
        vocabulary_map=tokenizer.get_vocab(),
        vq_config=vq_config,
    )
    side = vq_config["resolution"]
    images = transformers.ChameleonImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    )
    return (*chameleon_model(llm, tokenizer, images), side)


# --- the feature caches ---


def write_cache(model, processor, data_dir: Path, media: dict[str, list[str]], out: Path, seconds: list[float]) -> dict:
    """``encode_media`` (batch 1) into ``out``, each ``encode_files`` call's time appended to ``seconds``."""
    encode = model.encode_files

    def timed(processor, modality, files):
        started = clock()
        rows = encode(processor, modality, files)
        sync()
        seconds.append(clock() - started)
        return rows

    model.encode_files = timed  # an instance attribute: encode_media's calls go through it
    out.mkdir(parents=True, exist_ok=True)
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        with torch.autocast("cuda", torch.bfloat16) if bf16 else nullcontext():  # as `mmcl encode-media` does
            written = encode_media(model, processor, data_dir, media, out, batch_size=1, log=lambda line: None)
    finally:
        del model.encode_files
    return written


def write_manifest(out: Path, written: dict) -> None:
    manifest = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).exists() else {"modalities": {}}
    manifest["modalities"] |= {m: asdict(w) for m, w in written.items()}
    (out / MANIFEST).write_text(json.dumps(manifest) + "\n")


def data_path(shared: dict) -> list[dict]:
    """Decode + pre-process + encode per sample against reading the cached row, for each DATA_PATH shape; the
    caches it writes (tmp/caches/clip224: image and video, clip336: image) are what the presets train from."""
    data_dir, rows = shared["data_dir"], []
    for label, cache, modality in DATA_PATH:
        model = carrier(shared["towers"][cache], shared["tokenizer"]).to(device()).eval()
        processor, out, seconds = shared["processors"][cache], shared["tmp"] / "caches" / cache, []
        files = shared["media"]["video224" if modality == "video" else cache.replace("clip", "image")]
        write_manifest(out, write_cache(model, processor, data_dir, {modality: files}, out, seconds))
        decode = statistics.median(seconds[1:])
        store = FeatureStore(out, processor, data_dir)
        store.load(modality, data_dir / files[0])  # opens the shard
        started, passes = clock(), 0
        while clock() - started < CACHE_SECONDS:
            for file in files:
                store.load(modality, data_dir / file)
            passes += 1
        cached = (clock() - started) / (passes * len(files))
        rows.append({"shape": label, "decode": 1 / decode, "cached": 1 / cached, "ratio": decode / cached})
        print(f"data path, {label}: {1 / decode:.3f} samples/s decoded and encoded, {1 / cached:.0f} cached")
    return rows


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --- FLOPs ---


@dataclass
class Counts:
    """The parameter groups of the FLOPs formula (module docstring)."""

    trained: int  # N_tr
    frozen_grad: int  # N_fg
    frozen_forward: int  # N_ff
    head_trained: bool
    hidden: int
    vocab: int
    layers: int
    attention: int  # heads x head_dim
    projectors: dict[str, tuple[int, int]]  # modality -> (P_m1, P_m2), trained projectors only


def counts_of(model) -> Counts:
    llm = model.llm
    causal = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    embed, head = causal.get_input_embeddings().weight, causal.get_output_embeddings().weight
    vq = {id(p) for name, p in causal.named_parameters() if ".vqmodel." in f".{name}"}  # Chameleon's image tokenizer
    outside = {id(embed), id(head)} | vq
    projectors = {
        m: (module[0].weight.numel() + module[0].bias.numel(), module[2].weight.numel() + module[2].bias.numel())
        for m, module in model.projectors.items()
        if module[0].weight.requires_grad
    }
    reached = bool(projectors) or embed.requires_grad  # the inputs need a gradient: backward runs through all layers
    trained = frozen_grad = frozen_forward = 0
    for param in llm.parameters():
        if id(param) in outside:
            continue
        reached |= param.requires_grad
        if param.requires_grad:
            trained += param.numel()
        elif reached:
            frozen_grad += param.numel()
        else:
            frozen_forward += param.numel()
    config = causal.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return Counts(
        trained,
        frozen_grad,
        frozen_forward,
        head.requires_grad,
        config.hidden_size,
        head.shape[0],
        config.num_hidden_layers,
        heads * head_dim,
        projectors,
    )


def batch_figures(batch: dict, model, counts: Counts) -> dict:
    lengths = batch["attention_mask"].sum(1).double()
    tokens, supervised = float(lengths.sum()), float(supervised_rows(batch["labels"]).sum())
    padded = float(batch["input_ids"].numel())
    media = {m: float((batch["input_ids"] == i).sum()) for m, i in getattr(model, "media_token_ids", {}).items()}
    c = counts
    flops = (6 * c.trained + 4 * c.frozen_grad + 2 * c.frozen_forward) * tokens
    flops += (6 if c.head_trained else 4) * c.hidden * c.vocab * supervised
    flops += sum((4 * p1 + 6 * p2) * media.get(m, 0.0) for m, (p1, p2) in c.projectors.items())
    flops += 12 * c.layers * c.attention * float((lengths**2).sum())
    head = 2 * c.hidden * c.vocab
    return {
        "tokens": tokens,
        "flops": flops,
        "head_all": head * padded,
        "head_supervised": head * supervised,
        "prompt_share": (tokens - supervised) / padded,
        "removed": 1 - supervised / padded,
    }


# --- the two loops ---


def to_device(batch, where: torch.device):
    if isinstance(batch, dict):
        return {key: to_device(value, where) for key, value in batch.items()}
    return batch.to(where)


def bf16_autocast():
    use = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return torch.autocast("cuda", torch.bfloat16) if use else nullcontext()


def mmcl_run(model, dataset, collator, settings: FitSettings, method) -> list[float]:
    stamps: list[float] = []

    def loss(model, batch, outputs, step):
        stamp(stamps)
        return method.loss(model, batch, outputs, step)

    # keep_fp32 as train-stage passes it: on a GPU frozen weights then stay bf16 for the bare loop's runs too
    result = fit(model, dataset, collator, settings, loss, lambda line: print(f"  mmcl: {line}"), keep_fp32=set())
    result["accelerator"].unwrap_model(result["prepared"], keep_fp32_wrapper=False)  # drops autocast's forward wrapper
    return np.diff(stamps).tolist()


def bare_run(model, dataset, collator, settings: FitSettings, steps: int) -> list[float]:
    where = device()
    trainable = [p for p in model.parameters() if p.requires_grad]
    fused = where.type == "cuda" or None
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay, fused=fused)
    sampler = StepSampler(len(dataset), settings.batch_size, steps, settings.seed)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collator.train_batch)
    stamps: list[float] = []
    model.train()
    for batch in loader:
        batch = to_device(batch, where)
        with bf16_autocast():
            loss = model(**batch).loss
        stamp(stamps)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return np.diff(stamps).tolist()


def build_preset(name: str, preset: Preset, params, args, shared: dict):
    """The preset's model with its media reader: the feature cache it trains from (mode-real's written here)."""
    torch.manual_seed(0)
    data_dir, media = shared["data_dir"], shared["media"]
    if preset.cache == "vq":
        folder = shared["tmp"] / name
        folder.mkdir()
        model, processor, side = chameleon(preset, params, args.layers, folder, args.quick)
        files = write_images(data_dir / "image512", side, args.files, shared["rng"])
        media["image512"] = [str(p.relative_to(data_dir)) for p in files]
        model.to(device())
        cache = shared["tmp"] / "caches" / "vq"
        write_manifest(cache, write_cache(model, processor, data_dir, {"image": media["image512"]}, cache, []))
        return model, FeatureStore(cache, processor, data_dir)
    model = multimodal(preset, params, args.layers, shared["towers"][preset.cache], shared["tokenizer"], args.quick)
    reader = FeatureStore(shared["tmp"] / "caches" / preset.cache, shared["processors"][preset.cache], data_dir)
    model.cached = frozenset(reader.modalities)  # what features.attach sets
    model.num_media_tokens |= {m: entry["shape"][0] for m, entry in reader.modalities.items()}
    return model, reader


def more_rounds(done: int, args, elapsed: float) -> bool:
    """At least ``--rounds``; more while under ``--seconds``, ending such an extension on an even count (ABBA)."""
    return done < args.rounds or elapsed < args.seconds or (done > args.rounds and done % 2 == 1)


def train_preset(name: str, preset: Preset, params, model, reader: FeatureStore, media: dict, args) -> dict:
    """The method applied as ``mmcl train-stage`` does, both loops timed, one evaluation batch."""
    method_config = params.methods[preset.method]
    method = METHODS.get(method_config.type)(method_config)
    if problem := method.model_problem(model):
        raise RuntimeError(f"{name}: method {preset.method}: {problem}")
    method.prepare_model(model)
    train = params.train
    if train.gradient_checkpointing and torch.cuda.is_available():  # as open_stage does (mode-real)
        enable_gradient_checkpointing(model.llm)
    train_only(model, set(method.trainable_parameters(model)))
    model.to(device())
    settings = FitSettings.of(
        train,
        train,
        steps=args.steps,
        batch_size=args.batch_size or (train.batch_size if torch.cuda.is_available() else 1),
        lr=method_config.lr or train.lr,
        seed=0,
        precision=train.precision if torch.cuda.is_available() else "fp32",  # the presets' bf16 targets GPUs
        num_workers=0,  # both loops load in the main process
        group_by_length=False,  # so that both loops draw the same batches (StepSampler)
        micro_batch_size=None,  # and run one forward per step
    )
    samples = [s for task in preset.tasks for s in samples_of(task, media[task.media], random.Random(task.name))]
    dataset = InstructionDataset(samples, reader.data_dir, reader)
    collator = Collator.for_model(model, suite_families(params.suites[params.grid.suite]), seed=settings.seed)
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"{name}: {total / 1e6:.0f}M parameters, {trained / 1e6:.2f}M trained, batch {settings.batch_size}")

    reset_peak()
    bare_run(model, dataset, collator, settings, steps=1)  # warm-up
    rounds: list[dict[str, list[float]]] = []  # per round, each loop's step times
    started = clock()
    while more_rounds(len(rounds), args, clock() - started):
        times = {}
        for loop in ("mmcl", "bare") if len(rounds) % 2 == 0 else ("bare", "mmcl"):
            if loop == "mmcl":
                times[loop] = mmcl_run(model, dataset, collator, settings, method)
            else:
                times[loop] = bare_run(model, dataset, collator, settings, args.steps)
        rounds.append(times)
    peak = peak_gib()
    step_mmcl, step_bare = (statistics.median(t for r in rounds for t in r[loop]) for loop in ("mmcl", "bare"))
    ratios = [statistics.median(r["mmcl"]) / statistics.median(r["bare"]) for r in rounds]
    counts = counts_of(model)
    sampler = StepSampler(len(dataset), settings.batch_size, settings.steps, settings.seed)
    timed = list(sampler)[1:]  # each timed step ends with the forward of batches 2..N
    figures = [batch_figures(collator.train_batch([dataset[i] for i in indices]), model, counts) for indices in timed]
    mean = {key: statistics.fmean(f[key] for f in figures) for key in figures[0]}

    model.eval()
    batch = to_device(collator.generation_batch([dataset[i] for i in range(settings.batch_size)]), device())
    started = clock()
    with torch.no_grad(), bf16_autocast():
        model.generate(**batch, max_new_tokens=EVAL_TOKENS)
    sync()
    eval_seconds = clock() - started
    peak_flops_ = peak_flops()
    result = {
        "preset": name,
        "model": type(model).__name__,
        "method": preset.method,
        "params": total,
        "trained": trained,
        "batch": settings.batch_size,
        "samples_s": settings.batch_size / step_mmcl,
        "tokens_s": mean["tokens"] / step_mmcl,
        "step_mmcl": step_mmcl,
        "step_bare": step_bare,
        "ratio": statistics.median(ratios),
        "ratios": (min(ratios), max(ratios)),
        "peak_gib": peak,
        "flops": mean["flops"],
        "mfu": None if peak_flops_ is None else mean["flops"] / step_mmcl / peak_flops_,
        "eval_s": eval_seconds,
        **{key: mean[key] for key in ("head_all", "head_supervised", "prompt_share", "removed")},
    }
    print(
        f"{name}: {result['samples_s']:.3f} samples/s, {result['tokens_s']:.1f} tokens/s; step mmcl {step_mmcl:.3f} s"
    )
    for number, (times, ratio) in enumerate(zip(rounds, ratios, strict=True), start=1):
        steps = {loop: ", ".join(f"{t:.3f}" for t in values) for loop, values in times.items()}
        print(f"  round {number}: mmcl {steps['mmcl']} s, bare {steps['bare']} s: ratio {ratio:.3f}")
    print(
        f"{name}: step mmcl {step_mmcl:.3f} s, bare {step_bare:.3f} s; ratio {result['ratio']:.3f} (median of rounds)"
    )
    return result


# --- the report ---


def verdict(value: float, target: float, at_most: bool) -> str:
    return "PASS" if (value <= target if at_most else value >= target) else "FAIL"


def report(args, results: list[dict], path_rows: list[dict], wall: float) -> str:
    encoders = "1 layer, images at 1/4 side (--quick: a smoke test, not figures)" if args.quick else "full depth"
    lines = [
        "# Scale benchmark",
        "",
        f"- device: {device_name()}",
        f"- torch {torch.__version__}, transformers {transformers.__version__}, {datetime.date.today().isoformat()}",
        f"- command: `{' '.join(['python', 'workflow/scripts/' + Path(sys.argv[0]).name, *sys.argv[1:]])}`",
        f"- settings: decoder layers {args.layers or 'all'}, encoders {encoders}; per preset at least {args.rounds} "
        f"rounds (more until {args.seconds:.0f} s) of {args.steps}-step runs of each loop; {args.files} media "
        "file(s) per shape",
        f"- wall time of the run: {wall:.0f} s",
        "",
        "## Training step: mmcl `fit` against a bare PyTorch loop",
        "",
        "| preset | model | method | parameters (trained) | batch | samples/s | tokens/s | step mmcl (s) | "
        "step bare (s) | ratio: median (range) of rounds, target <= 1.10 | peak memory (GiB) | FLOPs/step | MFU | "
        "eval batch (s) |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f} %"
        lines.append(
            f"| {r['preset']} | {r['model']} | {r['method']} | {r['params'] / 1e6:.0f}M ({r['trained'] / 1e6:.1f}M) | "
            f"{r['batch']} | {r['samples_s']:.3f} | {r['tokens_s']:.1f} | {r['step_mmcl']:.3f} | "
            f"{r['step_bare']:.3f} | {r['ratio']:.3f} ({r['ratios'][0]:.2f}-{r['ratios'][1]:.2f}) "
            f"{verdict(r['ratio'], RATIO_TARGET, True)} | {r['peak_gib']:.1f} | {r['flops']:.3g} | {mfu} | "
            f"{r['eval_s']:.2f} |"
        )
    lines += [
        "",
        "## Data path per sample, one worker: decode + pre-process + frozen encoder against the feature cache",
        "",
        "| shape | decoded and encoded (samples/s) | cached (samples/s) | ratio (target >= 10x) |",
        "| --- | ---: | ---: | --- |",
    ]
    for row in path_rows:
        lines.append(
            f"| {row['shape']} | {row['decode']:.3f} | {row['cached']:.0f} | "
            f"{row['ratio']:.0f}x {verdict(row['ratio'], DATA_PATH_TARGET, False)} |"
        )
    lines += [
        "",
        "## LM-head FLOPs per batch (forward): logits at every position against the supervised positions only",
        "",
        "| preset | every position | supervised only | removed | of which prompt |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['preset']} | {r['head_all']:.3g} | {r['head_supervised']:.3g} | {100 * r['removed']:.1f} % | "
            f"{100 * r['prompt_share']:.1f} % |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=[*PRESETS, "all"], default="all")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers of each LLM (default: all)")
    parser.add_argument("--steps", type=int, default=3, help="steps per run of each loop (>= 2)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both loops, in ABBA order")
    parser.add_argument("--seconds", type=float, default=0, help="more rounds until a preset's timing took this long")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's on CUDA, 1 on CPU")
    parser.add_argument("--files", type=int, default=2, help="media files per shape")
    parser.add_argument("--quick", action="store_true", help="encoders at 1 layer, images at 1/4 side (smoke test)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results block here")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2: a step is timed between two consecutive steps")
    started = clock()
    names = list(PRESETS) if args.preset == "all" else [args.preset]
    with tempfile.TemporaryDirectory(prefix="mmcl-scale-") as tmp:
        tmp = Path(tmp)
        shared = {"tmp": tmp, "data_dir": tmp / "data", "rng": np.random.default_rng(0), "towers": {}, "processors": {}}
        sides = {}
        for cache, hub_id in (("clip224", CLIP_224), ("clip336", CLIP_336)):
            torch.manual_seed(0)
            tower, image_processor, sides[cache] = clip_tower(hub_id, args.quick)
            shared["towers"][cache] = tower
            shared["processors"][cache] = MediaProcessor(image_processor, None, VIDEO_FRAMES)
        data_dir, rng = shared["data_dir"], shared["rng"]
        written = {
            "image224": write_images(data_dir / "image224", sides["clip224"], args.files, rng),
            "image336": write_images(data_dir / "image336", sides["clip336"], args.files, rng),
            "video224": write_clips(data_dir / "video224", sides["clip224"], args.files, rng),
        }
        shared["media"] = {key: [str(p.relative_to(data_dir)) for p in paths] for key, paths in written.items()}
        (tmp / "words").mkdir()
        shared["tokenizer"] = word_tokenizer(tmp / "words")
        path_rows = data_path(shared)

        results = []
        for name in names:
            params = load_params(ROOT / "workflow" / "presets" / f"{name}.yaml")
            model, reader = build_preset(name, PRESETS[name], params, args, shared)
            results.append(train_preset(name, PRESETS[name], params, model, reader, shared["media"], args))
            del model, reader
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    block = report(args, results, path_rows, clock() - started)
    print(block)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(block)


if __name__ == "__main__":
    main()
