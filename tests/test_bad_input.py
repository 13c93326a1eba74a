"""Bad input gets one clear error: a catalogue of mistakes, one row each.

Configuration mistakes fail when params are loaded (`mmcl validate-config`, `snakemake -n`), before
any job; data, checkpoint and download problems fail at the first job that meets them. Each gives
one line naming the file or key, what is wrong and how to fix it, and leaves no output marked
complete. README.md's "When something is wrong" table lists every case id of CATALOGUE.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from test_download import PAYLOAD, SHA256, serve

from mmcl.cli import main
from mmcl.core.registry import ConfigError
from mmcl.data.download import fetch
from mmcl.jobs.params import load_params

DELETE = object()  # as a value in `edited`: remove the key


@dataclass
class Ctx:
    """What a case works with: scratch paths, and the tiny suite and base model (built only when used)."""

    request: pytest.FixtureRequest
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    paths: dict[str, Path | str] = field(default_factory=dict)  # "<name>" in a case's fragments
    through_cli: bool = False

    @property
    def out(self) -> Path:
        """Where the failing job would have written its output."""
        return self.tmp_path / "out" / "result"

    def note(self, name: str, value):
        self.paths[name] = value
        return value

    def expand(self, fragment: str) -> str:
        for name, value in {"out": self.out, **self.paths}.items():
            fragment = fragment.replace(f"<{name}>", str(value))
        return fragment

    def write_params(self, edit=None, text: str | None = None) -> Path:
        path = self.request.getfixturevalue("params_file")(edit)
        if text is not None:
            path.write_text(text)
        return self.note("params", path)

    @functools.cached_property
    def tiny(self):
        return self.request.getfixturevalue("tiny_suite")

    def data_copy(self) -> Path:
        """A copy of the tiny suite's data to damage."""
        return self.note("data", shutil.copytree(self.tiny[1], self.tmp_path / "data" / "micl-synth"))

    def train_stage(self, stage="image_qa", data=None, base=None, prev=None, params=None) -> None:
        """`mmcl train-stage` of the finetune method, in this process."""
        data = data or self.paths.get("data", self.tiny[1])
        base = base or self.request.getfixturevalue("tiny_base")
        args = ["--suite", "micl-synth", "--backbone", "tiny", "--method", "finetune", "--seed", 0, "--stage", stage]
        args += ["--data", data, "--base", base, "--out", self.out, *(["--prev", prev] if prev else [])]
        self.cli("train-stage", "--params", params or self.tiny[0].path, *args)

    def cli(self, *argv) -> None:
        """`mmcl ...` in this process."""
        self.through_cli = True
        main([str(arg) for arg in argv])


@dataclass(frozen=True)
class Case:
    id: str
    error: str  # name of the error class
    fragments: tuple[str, ...]  # the file or key, what is wrong, how to fix it (<name>: a path of the case)
    run: Callable[[Ctx], object]
    params: Callable[[Ctx], Path] | None = None  # configuration cases: writes the bad params file


def config(case_id: str, bad_params: Callable[[Ctx], Path], *fragments: str) -> Case:
    """A configuration mistake, caught by `mmcl validate-config` (and by `snakemake -n`)."""
    return Case(
        case_id,
        "ConfigError",
        ("<params>: ", *fragments),
        lambda ctx: ctx.cli("validate-config", "--params", bad_params(ctx)),
        bad_params,
    )


def edited(key: str, value) -> Callable[[Ctx], Path]:
    """params.yaml with one dotted key set to ``value`` (or removed: DELETE)."""

    def edit(params):
        *parents, last = key.split(".")
        for part in parents:
            params = params[part]
        if value is DELETE:
            del params[last]
        else:
            params[last] = value

    return lambda ctx: ctx.write_params(edit)


# --- data, checkpoints, training -----------------------------------------------------------------


def rewrite_split(edit: Callable[[str], str]) -> Callable[[Ctx], None]:
    """Damage image_qa's training split (in a copy of the data), then train on it."""

    def run(ctx):
        split = ctx.note("split", ctx.data_copy() / "image_qa" / "train.jsonl")
        split.write_text(edit(split.read_text()))
        ctx.train_stage("image_qa")

    return run


def third_record(change: Callable[[dict], None]) -> Callable[[str], str]:
    def edit(text):
        lines = text.splitlines(keepends=True)
        record = json.loads(lines[2])
        change(record)
        lines[2] = json.dumps(record) + "\n"
        return "".join(lines)

    return edit


def cut_last_line(text: str) -> str:
    """The file as an interrupted copy leaves it: the last record cut in the middle."""
    return text[: len(text) - len(text.splitlines()[-1]) // 2 - 1]


def remove_split(ctx):
    (ctx.data_copy() / "image_qa" / "train.jsonl").unlink()
    ctx.train_stage("image_qa")


def remove_media(ctx):
    media = ctx.note("media", ctx.data_copy() / "media" / "image_qa" / "train" / "00005.png")
    media.unlink()
    ctx.train_stage("image_qa")


def corrupt_media(task: str, junk: bytes) -> Callable[[Ctx], None]:
    """Every training media file of ``task`` replaced by bytes of no media format."""

    def run(ctx):
        media = ctx.note("media", ctx.data_copy() / "media" / task / "train")
        for path in media.iterdir():
            path.write_bytes(junk)
        ctx.train_stage(task)

    return run


def foreign_checkpoint(ctx) -> Path:
    """A stage checkpoint of a GPT-NeoX-style LLM: its tensor names do not exist in the tiny Llama."""
    import torch

    from mmcl.models.checkpoint import save_stage

    embedding = torch.nn.ModuleDict({"embed_in": torch.nn.Embedding(8, 4)})
    model = torch.nn.ModuleDict({"llm": torch.nn.ModuleDict({"gpt_neox": embedding})})
    path = ctx.note("prev", ctx.tmp_path / "other" / "checkpoint")
    save_stage(path, model, set(model.state_dict()), {}, {"stage": "image_qa"})
    return path


def tampered_checkpoint(ctx) -> Path:
    path = foreign_checkpoint(ctx)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"!")
    return path


def absurd_learning_rate(ctx):
    params = yaml.safe_load(Path(ctx.tiny[0].path).read_text())
    params["train"].update(lr=1.0e6, steps=10)
    ctx.train_stage("image_qa", params=ctx.write_params(text=yaml.safe_dump(params)))


def disk_fills_during_checkpoint_write(ctx):
    """ENOSPC simulated in the checkpoint writer, after part of the file reached the disk."""

    def save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(bytes(4096))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))

    ctx.monkeypatch.setattr("mmcl.models.checkpoint.save_file", save_file)
    ctx.train_stage("image_qa")


# --- downloads -----------------------------------------------------------------------------------


def download(files: dict[str, bytes], path: str, sha256: str = SHA256):
    def run(ctx):
        with serve(files) as server:
            fetch(ctx.note("url", f"{server.url}{path}"), ctx.out, sha256, retries=1, backoff=0.01)

    return run


def download_from_closed_port(ctx):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fetch(ctx.note("url", f"http://127.0.0.1:{port}/data.bin"), ctx.out, SHA256, retries=1, backoff=0.01)


WRONG_SHA256 = "0" * 64
SUITE = "suites.micl-synth"

CATALOGUE = [
    # configuration: names that refer to nothing
    config(
        "unknown-method",
        edited("grid.methods", ["finetune", "lroa"]),
        "grid.methods[1]: unknown method 'lroa'",
        "(did you mean 'lora'?)",
        "; defined: ",
    ),
    config(
        "unknown-baseline",
        edited("grid.baseline", "lroa"),
        "grid.baseline: unknown method of grid.methods 'lroa'",
        "(did you mean 'lora'?)",
    ),
    config(
        "unknown-task",
        edited(f"{SUITE}.orders.img-aud-vid", ["image_cap", "imag_qa"]),
        f"{SUITE}.orders.img-aud-vid[1]: unknown task 'imag_qa'",
        "(did you mean 'image_qa'?)",
    ),
    config(
        "task-not-in-suite",
        edited(f"{SUITE}.orders.img-aud-vid", ["image_cap", "ocr"]),
        f"{SUITE}.orders.img-aud-vid[1]: unknown task 'ocr'; defined: audio_cap, audio_qa, image_cap",
    ),
    config(
        "unknown-backbone",
        edited("grid.backbones", ["tiyn"]),
        "grid.backbones[0]: unknown backbone 'tiyn'",
        "(did you mean 'tiny'?)",
    ),
    config(
        "unknown-backbone-family",
        edited("backbones.tiny.family", "tinny"),
        "backbones.tiny.family: unknown backbone family 'tinny'",
        "(did you mean 'tiny'?)",
        "; known: ",
    ),
    config(
        "unknown-order",
        edited("grid.orders", ["img-aud-vdi"]),
        "grid.orders[0]: unknown order of suite 'micl-synth' 'img-aud-vdi'",
        "(did you mean 'img-aud-vid'?)",
    ),
    config(
        "unknown-suite",
        edited("grid.suite", "micl-synht"),
        "grid.suite: unknown suite 'micl-synht'",
        "(did you mean 'micl-synth'?)",
    ),
    config(
        "unknown-method-type",
        edited("methods.lora_r32", {"type": "lroa", "r": 32}),
        "methods.lora_r32.type: unknown method 'lroa'",
        "(did you mean 'lora'?)",
    ),
    config(
        "unknown-schedule",
        edited("train.schedule", "cosin"),
        "train.schedule: unknown schedule 'cosin'",
        "(did you mean 'cosine'?)",
    ),
    config(
        "unknown-precision",
        edited("train.precision", "fp8"),
        "train.precision: unknown precision 'fp8'",
        "defined: auto, bf16, fp16, fp32",
    ),
    # configuration: misspelt keys, at every depth
    config("typo-section", edited("trian", {"steps": 10}), "trian: unknown section (did you mean 'train'?)"),
    config("typo-key", edited("train.stpes", 10), "train.stpes: unknown key 'stpes' (did you mean 'steps'?)"),
    config(
        "typo-key-method",
        edited("methods.lora.alhpa", 8),
        "methods.lora.alhpa: unknown key 'alhpa' (did you mean 'alpha'?)",
    ),
    config(
        "typo-key-deep",
        edited("backbones.tiny.llm.hiden_size", 64),
        "backbones.tiny.llm.hiden_size: unknown key 'hiden_size' (did you mean 'hidden_size'?)",
    ),
    config(
        "typo-key-suite",
        edited(f"{SUITE}.world.image_szie", 16),
        f"{SUITE}.world.image_szie: unknown key 'image_szie' (did you mean 'image_size'?)",
    ),
    config(
        "unknown-key-no-match",
        edited("train.freeze", True),
        "train.freeze: unknown key 'freeze'; valid keys: steps, ",
        "batch_size, lr",
    ),
    # configuration: wrong types and missing values
    config("wrong-type", edited("train.steps", "many"), "train.steps: expected an integer, got 'many'"),
    config("wrong-type-list", edited("grid.methods", "finetune"), "grid.methods: expected a list", "got 'finetune'"),
    config("wrong-type-section", edited("train", 5), "train: expected a mapping of settings", "got 5"),
    config(
        "wrong-type-entry",
        edited("methods.lora", "r16"),
        "methods.lora: expected a mapping of settings ({} for none), got 'r16'",
    ),
    config(
        "missing-required",
        edited("backbones.micl-pythia-160m.llm", DELETE),
        "backbones.micl-pythia-160m.llm: required value is missing; set it to a string",
    ),
    # configuration: lists and orders
    config("empty-grid-list", edited("grid.methods", []), "grid.methods: list at least one method"),
    config("empty-order", edited(f"{SUITE}.orders.img-aud-vid", []), "an order needs at least one task"),
    config(
        "order-task-twice",
        edited(f"{SUITE}.orders.img-aud-vid", ["image_cap", "image_qa", "image_cap"]),
        f"{SUITE}.orders.img-aud-vid[2]: 'image_cap' is already listed at {SUITE}.orders.img-aud-vid[0]",
        "list it once",
    ),
    config(
        "grid-entry-twice",
        edited("grid.methods", ["lora", "finetune", "lora"]),
        "grid.methods[2]: 'lora' is already listed at grid.methods[0]; list it once",
    ),
    # configuration: numbers a run cannot work with
    config("zero-lr", edited("train.lr", 0), "train.lr: must be > 0, got 0", "e.g. 0.001 (the default)"),
    config(
        "negative-method-lr",
        edited("methods.lora.lr", -3.0e-3),
        "methods.lora.lr: must be > 0, got -0.003; set a value > 0, or remove it",
    ),
    config("zero-steps", edited("train.steps", 0), "train.steps: must be > 0, got 0", "e.g. 200 (the default)"),
    config("negative-batch-size", edited("train.batch_size", -4), "train.batch_size: must be > 0, got -4"),
    config(
        "zero-backbone-batch-size",
        edited("backbones.tiny.stage0.batch_size", 0),
        "backbones.tiny.stage0.batch_size: must be > 0, got 0",
        "e.g. 32 (the default)",
    ),
    config("warmup-out-of-range", edited("train.warmup_ratio", 1.5), "train.warmup_ratio: must be in [0, 1)"),
    # configuration: the file itself
    config(
        "invalid-yaml",
        lambda ctx: ctx.write_params(text="grid: [finetune\ntrain: {steps: 3}\n"),
        "line 2, column 6: not valid YAML (expected ',' or ']', but got ':'); fix the syntax there",
    ),
    config(
        "missing-params-file",
        lambda ctx: ctx.note("params", ctx.tmp_path / "params.yml"),
        "no such file",
        "pass --params PATH (snakemake: --config params=PATH)",
    ),
    # data, at the first job that reads it
    Case(
        "missing-data-dir",
        "DataError",
        (
            "<data>: data directory does not exist",
            "`dvc checkout <data>`",
            "`mmcl prepare --suite micl-synth --out <data>`",
        ),
        lambda ctx: ctx.train_stage(data=ctx.note("data", ctx.tmp_path / "nowhere" / "micl-synth")),
    ),
    Case(
        "missing-split-file",
        "DataError",
        ("<data>/image_qa/train.jsonl: missing split file", "mmcl prepare --suite micl-synth"),
        remove_split,
    ),
    Case(
        "truncated-jsonl",
        "DataError",
        ("<split>:", "last line cut off mid-record (the file is truncated)", "dvc checkout <data>"),
        rewrite_split(cut_last_line),
    ),
    Case(
        "jsonl-missing-field",
        "DataError",
        ("<split>:3: sample 'image_qa-train-00002': missing field 'answers'", "mmcl prepare"),
        rewrite_split(third_record(lambda record: record.pop("answers"))),
    ),
    Case(
        "jsonl-wrong-type",
        "DataError",
        ("<split>:3: sample 'image_qa-train-00002': 'answers' must be a list of strings, got 'red'",),
        rewrite_split(third_record(lambda record: record.update(answers="red"))),
    ),
    Case(
        "jsonl-gold-not-an-option",
        "DataError",
        ("<split>:3: sample 'image_qa-train-00002': the gold answer", "is not in its 'options' ['yes', 'no']"),
        rewrite_split(third_record(lambda record: record.update(options=["yes", "no"]))),
    ),
    Case(
        "missing-media-file",
        "DataError",
        (
            "<data>/image_qa/train.jsonl:6: sample 'image_qa-train-00005': media file <media> does not exist",
            "dvc checkout <data>",
        ),
        remove_media,
    ),
    Case(
        "corrupt-image",
        "DataError",
        ("<media>/", ".png: not a readable image", "re-run `mmcl prepare`", "or replace the file"),
        corrupt_media("image_qa", b"\x89PNX not an image"),
    ),
    Case(
        "corrupt-audio",
        "DataError",
        ("<media>/", ".wav: not a readable audio file", "re-run `mmcl prepare`", "or replace the file"),
        corrupt_media("audio_qa", b"RIFF\x00\x00 not a wave"),
    ),
    Case(
        "corrupt-video",
        "DataError",
        ("<media>/", ".gif: not a readable video clip", "re-run `mmcl prepare`", "or replace the file"),
        corrupt_media("video_qa", b"GIF89a not a clip"),
    ),
    # models and checkpoints
    Case(
        "not-a-base-model",
        "CheckpointError",
        ("<base>: not a base model directory (no backbone.json)", "build it with `mmcl train-base`"),
        lambda ctx: ctx.train_stage(base=ctx.note("base", ctx.tiny[1])),
    ),
    Case(
        "checkpoint-other-backbone",
        "CheckpointError",
        ("<prev>: 1 tensors do not exist in this model", "llm.gpt_neox.embed_in.weight", "another method or backbone"),
        lambda ctx: ctx.train_stage("image_cap+image_qa", prev=foreign_checkpoint(ctx)),
    ),
    Case(
        "checkpoint-hash-mismatch",
        "CheckpointError",
        ("<prev>", "model.safetensors does not match its recorded SHA-256", "re-run the workflow to recompute it"),
        lambda ctx: ctx.train_stage("image_cap+image_qa", prev=tampered_checkpoint(ctx)),
    ),
    Case(
        "nan-loss",
        "NonFiniteLoss",
        ("non-finite loss (nan) at step", "last finite loss", "lower the learning rate (train.lr or methods."),
        absurd_learning_rate,
    ),
    Case(
        "disk-full",
        "OSError",
        ("<out>: disk full", "needs more than the", "MB free", "free some space and re-run", "Nothing was marked"),
        disk_fills_during_checkpoint_write,
    ),
    # downloads
    Case(
        "download-404",
        "DataError",
        ("<url>: HTTP 404 Not Found", "check the URL in params.yaml, or place the file at <out> by hand"),
        download({}, "/gone.bin"),
    ),
    Case(
        "download-unreachable",
        "DataError",
        ("<url>: download failed after 2 attempts", "Connection refused", "check the network", "<out> by hand"),
        download_from_closed_port,
    ),
    Case(
        "download-checksum",
        "DataError",
        (f"<url>: downloaded file has SHA-256 {SHA256}, expected {WRONG_SHA256}", "<out>.part was removed"),
        download({"/data.bin": PAYLOAD}, "/data.bin", WRONG_SHA256),
    ),
]


@pytest.fixture
def ctx(request, tmp_path, monkeypatch) -> Ctx:
    return Ctx(request, tmp_path, monkeypatch)


@pytest.mark.parametrize("case", CATALOGUE, ids=lambda case: case.id)
def test_bad_input_gets_one_clear_error(case, ctx, capsys):
    with pytest.raises((SystemExit, Exception)) as caught:
        case.run(ctx)
    err = caught.value
    assert isinstance(err, SystemExit) == ctx.through_cli
    if ctx.through_cli:  # `mmcl` prints one line on stderr, no traceback, and exits
        stderr = capsys.readouterr().err
        err = err.__context__
        assert stderr.endswith(f"\nerror: {err}\n") or stderr == f"error: {err}\n"
        assert "Traceback" not in stderr
        assert caught.value.code == (2 if isinstance(err, ConfigError) else 1)
    assert case.error in [cls.__name__ for cls in type(err).__mro__]
    message = str(err)
    assert "\n" not in message
    for fragment in case.fragments:
        assert ctx.expand(fragment) in message
    # nothing marked complete: no output, no half-written temporary copy or partial download beside it
    assert not ctx.out.exists()
    assert not list(ctx.out.parent.glob(f".{ctx.out.name}.*"))
    assert not ctx.out.with_name(f"{ctx.out.name}.part").exists()


def test_catalogue_ids_are_unique():
    ids = [case.id for case in CATALOGUE]
    assert len(ids) == len(set(ids)) >= 25


DRY_RUN = ["unknown-method", "zero-lr", "invalid-yaml", "missing-params-file"]


@pytest.mark.parametrize("case", [c for c in CATALOGUE if c.id in DRY_RUN], ids=lambda case: case.id)
def test_snakemake_dry_run_refuses_before_any_job(case, ctx, repo_root):
    path = case.params(ctx)
    with pytest.raises(ConfigError) as err:
        load_params(path)
    snakemake = [sys.executable, "-m", "snakemake", "-n", "-s", repo_root / "Snakefile", "-d", ctx.tmp_path / "run"]
    result = subprocess.run([*snakemake, "--config", f"params={path}"], capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert str(err.value) in output
    assert "Job stats" not in output and not (ctx.tmp_path / "run" / "results").exists()


def test_readme_table_lists_every_case(repo_root):
    readme = (repo_root / "README.md").read_text()
    section = readme.split("## When something is wrong", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE)
    assert sorted(listed) == sorted(case.id for case in CATALOGUE)


def test_disk_full_on_a_real_tiny_filesystem(tmp_path):
    """safetensors raises its own exception type on a full disk: atomic_path still recognises it."""
    import torch

    from mmcl.models.checkpoint import save_stage

    mount = tmp_path / "tiny-fs"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]
    if not shutil.which("mount") or subprocess.run(command, capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        model = torch.nn.Linear(1024, 1024)  # 4 MB of weights
        with pytest.raises(OSError) as err:
            save_stage(mount / "checkpoint", model, set(model.state_dict()), {}, {"stage": "image_qa"})
        assert err.value.errno == errno.ENOSPC
        assert str(err.value).startswith(f"[Errno {errno.ENOSPC}] {mount / 'checkpoint'}: disk full")
        assert "needs more than the 1.0 MB free" in str(err.value)
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)
