"""``mmcl encode-media``: the frozen encoders' output for each media file of a suite (``mmcl.engine.features``)."""

from __future__ import annotations

import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from mmcl.config.schema import Params
from mmcl.core.provenance import record
from mmcl.core.registry import ConfigError
from mmcl.engine.features import attach, cache_dtype, encode_media, suite_media, write_manifest
from mmcl.models.checkpoint import load_base


def encode_suite_media(
    params: Params, suite: str, backbone: str, data_dir: Path, base_dir: Path, out_dir: Path, log=print
) -> None:
    """Write the feature cache of (suite, backbone) to ``out_dir``, resuming an interrupted attempt's shards."""
    model, processor = load_base(base_dir)
    if not model.freeze_encoders:
        raise ConfigError(
            f"backbone '{backbone}' trains its encoders (freeze_encoders: false), so their outputs change at every "
            f"step and cannot be cached; set backbones.{backbone}.feature_cache: false"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.eval()
    for encoder in model.media_encoders(processor):  # the LLM stays where it is: it is not run
        encoder.to(device)
    media = suite_media(data_dir, list(params.suites[suite].tasks))
    partial = out_dir.with_name(out_dir.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    bf16 = cache_dtype(device) == torch.bfloat16
    with torch.autocast("cuda", torch.bfloat16) if bf16 else nullcontext():
        written = encode_media(model, processor, data_dir, media, partial, params.evaluation.batch_size, log)
    write_manifest(partial, base_dir, written)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(partial, out_dir)
    attach(model, processor, out_dir, base_dir, data_dir, log)  # the consumers' check, once, here
    counts = ", ".join(f"{w.rows} {m}" for m, w in written.items())
    seconds = time.perf_counter() - started
    log(f"feature cache of {suite}/{backbone} written to {out_dir}: {counts} files ({seconds:.1f} s)")
    record(out_dir / "provenance.json", params, {"command": "encode-media", "suite": suite, "backbone": backbone})
