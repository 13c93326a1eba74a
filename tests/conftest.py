"""Shared fixtures: the repository's params.yaml as a dict, and writing variants of it; decoding media;
real datasets' sources made here and run through the workflow's commands (test_datasets*.py)."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def default_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture
def params_file(tmp_path, default_params):
    """``params_file(edit)`` writes params.yaml after ``edit(params_dict)`` and returns its path."""

    def write(edit=None, name: str = "params.yaml") -> Path:
        params = copy.deepcopy(default_params)
        if edit:
            edit(params)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        return path

    return write


def shrink(params: dict) -> None:
    """A few samples per task and a handful of steps: enough to exercise every code path quickly."""
    params["suites"]["micl-synth"]["sizes"] = {"train": 24, "test": 8, "pretrain": 16}
    params["backbones"]["tiny"]["encoder_pretraining"] = {"steps": {"image": 3, "audio": 3}, "batch_size": 8}
    params["backbones"]["tiny"]["stage0"] = {"steps": 4, "batch_size": 8, "lr": 3.0e-3}
    params["train"].update(steps=3, task_steps={}, batch_size=4, log_every=1)


@pytest.fixture(scope="session")
def tiny_suite(tmp_path_factory, default_params):
    """Small micl-synth data prepared by `mmcl prepare`, with its params."""
    from mmcl.cli import main
    from mmcl.jobs.params import load_params

    root = tmp_path_factory.mktemp("tiny")
    params = copy.deepcopy(default_params)
    shrink(params)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    data = root / "data" / "micl-synth"
    main(["prepare", "--params", str(path), "--suite", "micl-synth", "--out", str(data)])
    return load_params(path), data


@pytest.fixture(scope="session")
def tiny_base(tiny_suite, tmp_path_factory):
    """The tiny backbone's base directory (stage 0 run for a few steps)."""
    from mmcl.jobs.train_base import train_base

    params, data = tiny_suite
    out = tmp_path_factory.mktemp("base") / "checkpoint"
    train_base(params, "micl-synth", "tiny", data, out, log=lambda _: None)
    return out


def batch_of(model, processor, params, data, task, n=4, suite="micl-synth"):
    """A training batch of a ``suite`` task's first ``n`` samples, collated for ``model``."""
    from mmcl.data.families import suite_families
    from mmcl.data.records import read_jsonl, split_path
    from mmcl.engine.batching import Collator, InstructionDataset

    samples = read_jsonl(split_path(data, task, "train"))[:n]
    dataset = InstructionDataset(samples, data, processor)
    collator = Collator(model.tokenizer, model.num_media_tokens, suite_families(params.suites[suite]))
    return collator.train_batch([dataset[i] for i in range(len(dataset))])


# --- Tiny random-init Hugging Face parts saved with save_pretrained: the `hf` family's hub path, offline ---


def save_tiny_llm(arch: str, tokenizer_dir: Path, out: Path) -> Path:
    """A one-layer causal LM of the architecture family ``arch`` (a transformers model_type: gpt_neox,
    phi, llama, ...) with the word-level tokenizer of ``tokenizer_dir``, as a hub checkpoint is laid out."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.save_pretrained(out)
    config = AutoConfig.for_model(
        arch,
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    return out


def save_tiny_clip(out: Path) -> Path:
    """A CLIP vision tower for 32 px images in 16 px patches (4 patches + the class token) and its processor."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(
        image_size=32, patch_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    CLIPVisionModel(config).save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def save_tiny_whisper(out: Path) -> Path:
    """A Whisper model whose encoder reads 1 s of 40-bin log-mel at hop 320 (25 positions), and its extractor."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    WhisperModel(
        WhisperConfig(
            num_mel_bins=40,
            d_model=16,
            encoder_layers=1,
            encoder_attention_heads=2,
            decoder_layers=1,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_source_positions=25,
            max_target_positions=4,
            vocab_size=8,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        )
    ).save_pretrained(out)
    WhisperFeatureExtractor(feature_size=40, sampling_rate=16000, hop_length=320, chunk_length=1).save_pretrained(out)
    return out


def with_backbone(params, name: str, entry: str, **changes):
    """``params`` reloaded with one more backbone, ``name``: the ``entry`` of params.yaml (a real backbone)
    with ``changes``, e.g. its hub ids (llm, image_encoder, audio_encoder) replaced by local paths."""
    from mmcl.config.fingerprint import to_plain
    from mmcl.jobs.params import load_params

    changes = {key: str(value) if isinstance(value, Path) else value for key, value in changes.items()}
    return load_params(params.path, overrides={"backbones": {name: to_plain(params.backbones[entry]) | changes}})


@pytest.fixture(scope="session")
def processor():
    """Decodes media as the encoders' inputs (32 px images, 4 video frames, 40 mel bins): converted
    datasets must load through it."""
    from transformers import CLIPImageProcessor, WhisperFeatureExtractor

    from mmcl.data.media import MediaProcessor

    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    sound = WhisperFeatureExtractor(feature_size=40, sampling_rate=16000, hop_length=320, chunk_length=1)
    return MediaProcessor(images, sound, video_frames=4)


# --- Whole-workflow runs in a scratch project (shared by the workflow, Slurm and resume tests) ---

PROJECT_FILES = ("Snakefile", "dvc.yaml", ".dvcignore", ".gitignore")


def make_project(where: Path, params: dict) -> Path:
    """A copy of the workflow (not of data or results) with its own params.yaml."""
    import shutil

    where.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        shutil.copy(ROOT / name, where / name)
    for name in ("workflow", ".dvc", "src"):
        shutil.copytree(ROOT / name, where / name, ignore=shutil.ignore_patterns("tmp", "__pycache__"))
    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return where


def tiny_grid(params: dict) -> None:
    """Two methods x three stages of a few dozen samples: about a minute and a half on 2 cores."""
    shrink(params)
    suite = params["suites"]["micl-synth"]
    suite["sizes"] = {"train": 48, "test": 8, "pretrain": 16}
    suite["orders"] = {"short": ["image_qa", "audio_cap", "video_qa"]}
    params["presets"] = {}  # paper tables name orders this grid drops
    params["grid"].update(orders=["short"], methods=["finetune", "lora"], seeds=[0])
    params["train"].update(steps=30, batch_size=4, log_every=5, checkpoint_every=5)


@pytest.fixture(scope="session")
def tiny_grid_params(default_params) -> dict:
    params = copy.deepcopy(default_params)
    tiny_grid(params)
    return params


@pytest.fixture(scope="session")
def reference_grid(tmp_path_factory, tiny_grid_params) -> Path:
    """The tiny grid run once, locally and uninterrupted: what other ways of running it must equal."""
    import os
    import subprocess
    import sys

    project = make_project(tmp_path_factory.mktemp("reference") / "project", tiny_grid_params)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [str(bin_dir / "snakemake"), "--cores", "2"], cwd=project, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return project


# --- Real datasets: a source's files made here, served from 127.0.0.1, through the rules' commands ---


def image(shade: int, fmt: str = "JPEG") -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (40, 30), (shade, 255 - shade, 90)).save(out, fmt)
    return out.getvalue()


def zipped(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def as_json(data) -> bytes:
    return json.dumps(data).encode()


@dataclass
class Source:
    """A dataset in its source's layout: its params.yaml entry (without `files`) and its files."""

    name: str
    entry: dict
    files: dict[str, tuple[bytes, str]]  # file name -> (bytes, archive type)
    by_hand: set[str] = field(default_factory=set)  # files behind a login: placed at their `path`
    expected: dict[str, dict[str, tuple[str, list[str]]]] = field(default_factory=dict)  # split -> key -> (q, a)
    skipped: dict[str, int] = field(default_factory=dict)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dataset_entry(source: Source, url: str, root: Path, sha256_of=sha256) -> dict:
    """The params.yaml entry of ``source``: files by URL (served at ``url``) or, behind a login, by path."""
    files = {}
    for name, (data, archive) in source.files.items():
        spec = {"sha256": sha256_of(data), "archive": archive}
        if name in source.by_hand:
            path = root / "manual" / source.name / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            spec["path"] = str(path)
        else:
            spec["url"] = f"{url}/{source.name}/{name}"
        files[name] = spec
    return {**source.entry, "files": files}


def write_params(root: Path, default_params: dict, datasets: dict) -> Path:
    params = copy.deepcopy(default_params)
    params["datasets"] = datasets
    # The repository's real-data suites (and the presets that run them) read datasets not defined here.
    real = {name for name, suite in params["suites"].items() if suite.get("generator") == "datasets"}
    params["suites"] = {name: suite for name, suite in params["suites"].items() if name not in real}
    params["presets"] = {name: grid for name, grid in params["presets"].items() if grid["suite"] not in real}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def served(sources: list[Source]) -> dict[str, bytes]:
    return {f"/{s.name}/{name}": data for s in sources for name, (data, _) in s.files.items()}


def mmcl(*args) -> None:
    from mmcl.cli import main

    main([str(arg) for arg in args])


def prepare(params: Path, root: Path, source: Source) -> Path:
    """What the download, extract and convert rules run, in order; returns data/<dataset>."""
    downloads = root / "downloads" / source.name
    for name, (_, archive) in source.files.items():
        file = ["--params", params, "--dataset", source.name, "--file", name]
        mmcl("download", *file, "--out", downloads / name)
        if archive != "none":
            mmcl("extract", *file, "--archive", downloads / name, "--out", downloads / "extracted" / name)
    out = root / "data" / source.name
    mmcl("convert", "--params", params, "--dataset", source.name, "--sources", downloads, "--out", out)
    return out


def fails(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exit_:
        mmcl(*args)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def converts(source: Source, root: Path, default_params: dict, processor, capsys) -> Path:
    """Runs the rules' commands on ``source`` served from 127.0.0.1 and checks the converted dataset against
    its expected samples and skips, every media file decoding; returns data/<dataset>."""
    from test_download import serve

    with serve(served([source])) as server:
        params = write_params(root, default_params, {source.name: dataset_entry(source, server.url, root)})
        data = prepare(params, root, source)
    assert "warning" not in capsys.readouterr().out  # every file was pinned, so nothing went unverified
    check_converted(data, source, processor)
    return data


def check_converted(data: Path, source: Source, processor) -> None:
    """``data`` (a converted dataset) holds what ``source`` expects, and its media load as encoder inputs."""
    from mmcl.data.records import read_jsonl

    summary = json.loads((data / "prepare.json").read_text())
    assert summary["skipped"] == source.skipped
    assert set(summary["splits"]) == set(source.expected)
    modality = summary["modality"]
    for split, expected in source.expected.items():
        samples = read_jsonl(data / f"{split}.jsonl", data)
        assert summary["splits"][split]["samples"] == len(samples)
        got = {s.id.removeprefix(f"{source.name}-{split}-"): (s.instruction, s.answers) for s in samples}
        assert got == expected
        for sample in samples:
            assert sample.task == source.name and sample.modality == modality
            [media] = sample.media
            assert media.startswith("media/") and (data / media).is_file()
            inputs = processor.load(modality, data / media)
            assert inputs.shape == {"image": (3, 32, 32), "video": (4, 3, 32, 32), "audio": (40, 50)}[modality]
    assert summary["bytes"] == sum(p.stat().st_size for p in data.rglob("*") if p.is_file() and p.suffix != ".json")


# --- A suite that asks for images (generation) and about them, rendered from the embedded world ---


def write_drawing_suite(data: Path, train: int, test: int, seed: int = 0) -> Path:
    """``draw`` ("draw a red circle at the top left" -> its picture, answer "red circle top left") and
    ``image_qa`` (micl-synth's questions) in the common format, with the word tokenizer `mmcl prepare`
    builds: the generation setting before a generated suite of its own exists."""
    import numpy as np

    from mmcl.config.schema import WorldConfig
    from mmcl.data.generators.micl_synth import scene_question
    from mmcl.data.generators.micl_world import encode_scene, sample_scene
    from mmcl.data.records import Sample, split_path, write_jsonl
    from mmcl.data.vocab import build_word_tokenizer, words_of

    world = WorldConfig(image_size=32, max_objects=1)
    rng = np.random.default_rng(seed)
    words: set[str] = set()
    for split, size in (("train", train), ("test", test)):
        for task in ("draw", "image_qa"):
            (data / "media" / task / split).mkdir(parents=True, exist_ok=True)
            samples = []
            for index in range(size):
                scene = sample_scene(rng, world)
                media = f"media/{task}/{split}/{index:05d}.png"
                (data / media).write_bytes(encode_scene(scene, world, rng))
                (obj,) = scene
                if task == "draw":
                    instruction, answer = (
                        f"draw a {obj.color} {obj.shape} at the {obj.place}",
                        f"{obj.color} {obj.shape} {obj.place}",
                    )
                else:
                    instruction, answer = scene_question(scene, world, rng)
                samples.append(Sample(f"{task}-{split}-{index:05d}", task, "image", instruction, [answer], [media]))
                words |= words_of(samples[-1])
            write_jsonl(split_path(data, task, split), samples)
    (data / "vocab.txt").write_text("".join(f"{word}\n" for word in sorted(words)))
    build_word_tokenizer(data / "vocab.txt", data / "tokenizer")
    return data


def drawing_params(params: dict, tokenizer_steps: int, judge_steps: int, stage0_steps: int) -> dict:
    """``params`` with the drawing suite (`write_drawing_suite`), an embedded unified backbone and a judge."""
    params["suites"]["drawing"] = {
        "world": {"image_size": 32, "max_objects": 1},
        "tasks": {
            "draw": {"family": "generation", "modality": "image"},
            "image_qa": {"family": "qa", "modality": "image"},
        },
        "orders": {"qa": ["image_qa"]},
    }
    params["backbones"]["unified"]["tokenizer"].update(steps=tokenizer_steps, batch_size=16)
    params["backbones"]["unified"]["stage0"] = {"steps": stage0_steps, "batch_size": 16, "lr": 3.0e-3}
    params["judge"].update(steps=judge_steps, batch_size=32)
    return params


def build_drawing(
    root: Path, default_params: dict, tokenizer_steps: int, judge_steps: int, stage0_steps: int, train: int, test: int
) -> SimpleNamespace:
    """The drawing suite (``train``/``test`` samples per task and split), its image tokenizer and judge built
    by their commands, and the embedded unified base model, each trained for the steps given; stages train
    3 steps."""
    from mmcl.cli import main
    from mmcl.jobs.params import load_params
    from mmcl.jobs.train_base import train_base

    path = root / "params.yaml"
    raw = drawing_params(copy.deepcopy(default_params), tokenizer_steps, judge_steps, stage0_steps)
    raw["train"].update(steps=3, task_steps={}, batch_size=4, log_every=1)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(path)
    data = write_drawing_suite(root / "data" / "drawing", train, test)
    common = ["--params", str(path), "--suite", "drawing", "--data", str(data)]
    tokenizer, judge = root / "image_tokenizer", root / "judge"
    main(["train-tokenizer", *common, "--backbone", "unified", "--out", str(tokenizer)])
    main(["train-judge", *common, "--out", str(judge)])
    logged: list[str] = []
    base = root / "base"
    train_base(params, "drawing", "unified", data, base, log=logged.append, artifacts={"image_tokenizer": tokenizer})
    return SimpleNamespace(
        params=params, data=data, tokenizer=tokenizer, judge=judge, base=base, logged=logged, root=root
    )


def save_tiny_chameleon(words: list[str], out: Path, codebook_size: int = 16) -> Path:
    """A one-layer ChameleonForConditionalGeneration (as Chameleon and Anole are loaded) for 32 px images
    (4x4 codes), with a word-level tokenizer laid out as Chameleon's: the image tokens (IMGIMG<code in
    letters>Z), then the image end and start markers, then ``words``; its image processor beside it."""
    import torch
    from transformers import ChameleonConfig, ChameleonForConditionalGeneration, ChameleonImageProcessorPil

    from mmcl.data.vocab import build_word_tokenizer

    def letters(code: int) -> str:
        return "".join(chr(ord("A") + int(digit)) for digit in str(code))

    image = [f"IMGIMG{letters(code)}Z" for code in range(codebook_size)]
    vocab = out.parent / f"{out.name}-vocab.txt"
    vocab.write_text("".join(f"{word}\n" for word in [*image, "<eoss>", "<racm3:break>", *words]))
    build_word_tokenizer(vocab, out)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    config = ChameleonConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        vocabulary_map=tokenizer.get_vocab(),
        vq_config={
            "embed_dim": 8,
            "num_embeddings": codebook_size,
            "latent_channels": 32,
            "resolution": 32,
            "base_channels": 32,  # GroupNorm has 32 groups
            "channel_multiplier": [1, 1, 2, 2],  # three halvings: 32 px -> 4x4 codes
            "num_res_blocks": 1,
        },
    )
    torch.manual_seed(0)
    ChameleonForConditionalGeneration(config).save_pretrained(out)
    ChameleonImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def contract(tmp_path_factory, default_params):
    """The contract's suites, artifacts, start models and base scores (tests/contract_kit.py), once a session."""
    from contract_kit import build_contract

    return build_contract(tmp_path_factory.mktemp("contract"), default_params)
