"""The frozen-encoder feature cache: each media file's encoder output, computed once and read at every step.

With frozen encoders (the default), decoding, pre-processing and encoding a file gives the same tensor at
every step of every stage, method and seed of a suite. ``mmcl encode-media`` computes it once per (suite,
backbone) and training, teaching, evaluation and the gradient diagnostics read it instead:

    features.json                 format, dtype, the encoder fingerprint, per modality its shape and shards
    <modality>-<nnnnn>.safetensors   ``rows``: the files' encoder outputs (bf16 on a GPU, else fp32) one
                                  after another, (tokens, width) each, and ``offsets``: where each file's
                                  rows start. Video is already reduced over frames, audio cut to the
                                  positions its clip fills of the encoder's window (Whisper pads to 30 s),
                                  a unified backbone's images are their token ids (int32)
    <modality>.json               the files' paths under the data directory, in row order

Shards are written one by one into ``<out>.partial/`` and kept there, so an interrupted job resumes after
the last complete shard. The finished directory is sealed (``mmcl.core.integrity``). Its encoder
fingerprint hashes the base directory's encoder files: a job whose base model has other encoders (or
other video settings) refuses the cache instead of reading stale features.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from mmcl.config.fingerprint import digest
from mmcl.core.integrity import RECORD, CheckpointError, seal, verify
from mmcl.core.io import write_json
from mmcl.data.media import window_positions
from mmcl.data.records import load_split

MANIFEST = "features.json"
FORMAT = 2  # 2: rows as long as their media (audio cut to its clip), with offsets
SHARD_BYTES = 2**30  # rows per shard file: about 1 GB


class FeatureCacheMiss(CheckpointError):
    """A media file the job reads is not in the feature cache."""


def encoder_fingerprint(base_dir: Path) -> str:
    """Hash of what a base directory's cached features depend on: its encoder files and video settings."""
    from mmcl.models.checkpoint import MANIFEST as BASE_MANIFEST
    from mmcl.models.checkpoint import architecture_of

    base_dir = Path(base_dir)
    manifest = json.loads((base_dir / BASE_MANIFEST).read_text())
    parts = architecture_of(manifest).encoder_parts
    hashes = json.loads((base_dir / RECORD).read_text())
    return digest({"files": {f: h for f, h in hashes.items() if f.startswith(parts)}, "video": manifest.get("video")})


def suite_media(data_dir: Path, tasks: list[str]) -> dict[str, list[str]]:
    """Every media file the tasks' train and test splits read, per modality, in a fixed order."""
    found: dict[str, dict[str, None]] = {}
    for split in ("train", "test"):
        for sample in load_split(data_dir, tasks, split):
            for path in sample.media:
                found.setdefault(sample.modality, {})[path] = None
    return {modality: sorted(paths) for modality, paths in sorted(found.items())}


def cache_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that has it (as training computes there); fp32 on a CPU, where training is fp32."""
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32


def encoded_rows(model, processor, modality: str, paths: list[Path]) -> list[torch.Tensor]:
    """What the cache keeps of each file: ``model.encode_files``'s row, cut to the positions the file fills."""
    encoded = model.encode_files(processor, modality, paths).cpu()
    return [
        row[: window_positions(len(row), processor.window_share(modality, path))]
        for row, path in zip(encoded, paths, strict=True)
    ]


@dataclass
class Written:
    modality: str
    shards: int
    rows: int
    per_shard: int  # rows per shard file
    shape: list[int]  # of a file's rows filling its whole window


def encode_media(
    model, processor, data_dir: Path, media: dict[str, list[str]], out_dir: Path, batch_size: int, log=print
) -> dict[str, Written]:
    """Write the cached form (``model.encode_files``) of ``media`` into ``out_dir`` (a ``.partial`` directory
    a previous attempt may have filled in part: its complete shards are kept)."""
    device = next(model.media_encoders(processor)[0].parameters()).device
    dtype = cache_dtype(device)
    written = {}
    for modality, files in media.items():
        (out_dir / f"{modality}.json").write_text(json.dumps(files) + "\n")
        first = model.encode_files(processor, modality, [Path(data_dir) / files[0]])
        row_bytes = first[0].numel() * (first.element_size() if not first.is_floating_point() else dtype.itemsize)
        per_shard = max(batch_size, SHARD_BYTES // row_bytes // batch_size * batch_size)
        shards = range(0, len(files), per_shard)
        bar = tqdm(total=len(files), desc=f"encode {modality}", disable=not sys.stderr.isatty(), dynamic_ncols=True)
        started = time.perf_counter()
        for number, start in enumerate(shards):
            shard = out_dir / f"{modality}-{number:05d}.safetensors"
            chunk = files[start : start + per_shard]
            if not shard.exists():  # else written by an interrupted attempt
                rows = []
                for at in range(0, len(chunk), batch_size):
                    paths = [Path(data_dir) / f for f in chunk[at : at + batch_size]]
                    rows += encoded_rows(model, processor, modality, paths)
                    bar.update(len(paths))
                tensor = torch.cat(rows)
                offsets = torch.tensor([0, *(len(row) for row in rows)]).cumsum(0)
                tmp = shard.with_suffix(".tmp")
                tensor = tensor if not tensor.is_floating_point() else tensor.to(dtype)
                save_file({"rows": tensor, "offsets": offsets}, tmp)
                os.replace(tmp, shard)
            else:
                bar.update(len(chunk))
            log(
                f"{modality}: {min(start + per_shard, len(files))}/{len(files)} files "
                f"({time.perf_counter() - started:.0f} s)"
            )
        bar.close()
        written[modality] = Written(modality, len(shards), len(files), per_shard, list(first.shape[1:]))
    return written


def write_manifest(out_dir: Path, base_dir: Path, written: dict[str, Written]) -> None:
    """The manifest of a complete cache, then its seal."""
    dtypes = {
        m: str(safe_open(out_dir / f"{m}-00000.safetensors", "pt").get_slice("rows").get_dtype()) for m in written
    }
    entries = {m: {**asdict(w), "dtype": dtypes[m]} for m, w in written.items()}
    manifest = {"format": FORMAT, "encoders": encoder_fingerprint(base_dir), "modalities": entries}
    write_json(out_dir / MANIFEST, manifest)
    seal(out_dir)


class FeatureStore:
    """A media processor whose ``load`` reads the cache; everything else (a unified backbone's ``decode``, the
    processors' settings) is the decoding processor's. Shard files are opened lazily in each process, so
    DataLoader workers each read through their own handle.

    A file outside the cache (a method's extra dataset, as MoDE's image-text pairs) is decoded and encoded
    on the spot by ``encode``, in the main process, where a method builds its extra batches. DataLoader
    workers get no ``encode``: what they load is the suite's own data, all of it in the cache.
    """

    def __init__(self, directory: Path, processor, data_dir: Path, encode=None, log=print):
        self.directory, self.processor, self.data_dir = Path(directory), processor, Path(os.path.abspath(data_dir))
        self.encode, self.log, self.misses = encode, log, 0
        manifest = json.loads((self.directory / MANIFEST).read_text())
        self.modalities = manifest["modalities"]
        self.rows = {
            modality: {
                path: row for row, path in enumerate(json.loads((self.directory / f"{modality}.json").read_text()))
            }
            for modality in self.modalities
        }
        self._handles: dict[tuple[int, str], tuple[object, list[int]]] = {}  # an open shard and its offsets

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "processor":  # pickling and copying look these up before __init__
            raise AttributeError(name)
        return getattr(self.processor, name)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}, "encode": None, "log": None}

    def load(self, modality: str, path: Path) -> torch.Tensor:
        if modality not in self.modalities:
            return self.processor.load(modality, path)
        try:
            row = self.rows[modality][str(Path(os.path.abspath(path)).relative_to(self.data_dir))]
        except (KeyError, ValueError):
            if self.encode is not None:
                self.misses += 1
                if self.misses == 1:
                    self.log(f"media: files outside the feature cache (e.g. {path}) are encoded when read")
                return self.encode(modality, Path(path))
            raise FeatureCacheMiss(
                f"{path}: not in the feature cache {self.directory} (it holds the {modality} files of the suite's "
                f"train and test splits under {self.data_dir}); re-run `mmcl encode-media`, or set the backbone's "
                "feature_cache: false to decode media at every step"
            ) from None
        per_shard = self.modalities[modality]["per_shard"]
        key = (os.getpid(), f"{modality}-{row // per_shard:05d}.safetensors")
        if key not in self._handles:
            shard = safe_open(self.directory / key[1], framework="pt")
            self._handles[key] = shard, shard.get_tensor("offsets").tolist()
        shard, offsets = self._handles[key]
        return shard.get_slice("rows")[offsets[row % per_shard] : offsets[row % per_shard + 1]]


def attach(model, processor, features_dir: Path, base_dir: Path, data_dir: Path, log=print) -> FeatureStore:
    """Make ``model`` read the cached encoder outputs of ``features_dir``: returns the processor to load media
    with. Refuses a damaged cache, or one computed with other encoders than ``base_dir``'s."""
    features_dir = Path(features_dir)
    verify(features_dir)
    manifest = json.loads((features_dir / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise CheckpointError(
            f"{features_dir}: written by an older mmcl (cache format {manifest.get('format', 1)}, this one reads "
            f"{FORMAT}); delete it and re-run `mmcl encode-media` (the workflow's rule encode_media)"
        )
    if manifest["encoders"] != encoder_fingerprint(base_dir):
        raise CheckpointError(
            f"{features_dir}: computed with other encoders or video settings than {base_dir}'s; "
            "re-run `mmcl encode-media` (the workflow does when the base model changes)"
        )

    def encode(modality: str, path: Path) -> torch.Tensor:
        return encoded_rows(model, processor, modality, [path])[0]

    store = FeatureStore(features_dir, processor, data_dir, encode, log)
    model.cached = frozenset(store.modalities)
    log(f"media: cached encoder outputs of {', '.join(store.modalities)} from {features_dir}")
    return store


def media_reader(model, processor, features_dir: Path | None, base_dir: Path, data_dir: Path, log=print):
    """What a job loads media with: the feature cache when it has one (``attach``), else ``processor``."""
    if features_dir is not None:
        return attach(model, processor, features_dir, base_dir, data_dir, log)
    log("media: decoded and encoded at every step (no feature cache: the encoders train, or feature_cache: false)")
    return processor
