"""The frozen-encoder feature cache: computed once, resumed after an interruption, refused when stale, and
trained on with the same losses as decoding the media."""

from __future__ import annotations

import copy
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmcl.core.integrity import CheckpointError, seal
from mmcl.engine import features
from mmcl.engine.features import FeatureCacheMiss, attach
from mmcl.jobs.encode_media import encode_suite_media
from mmcl.jobs.stage import StageJob
from mmcl.jobs.train_stage import train_stage
from mmcl.models.checkpoint import load_base

QUIET = lambda _: None  # noqa: E731


@pytest.fixture(scope="module")
def cache(tiny_suite, tiny_base, tmp_path_factory) -> Path:
    params, data = tiny_suite
    out = tmp_path_factory.mktemp("features") / "features"
    encode_suite_media(params, "micl-synth", "tiny", data, tiny_base, out, log=QUIET)
    return out


def test_the_cache_holds_what_the_encoders_compute(tiny_suite, tiny_base, cache):
    _, data = tiny_suite
    model, processor = load_base(tiny_base)
    manifest = json.loads((cache / features.MANIFEST).read_text())
    assert set(manifest["modalities"]) == {"image", "audio", "video"}
    store = attach(model, processor, cache, tiny_base, data, log=QUIET)
    for modality in ("image", "audio", "video"):
        name = json.loads((cache / f"{modality}.json").read_text())[3]
        with torch.no_grad():
            live = model.features(modality, processor.load(modality, data / name)[None])[0]
        assert store.load(modality, data / name).shape == live.shape
        assert live.shape[0] == model.num_media_tokens[modality]
        torch.testing.assert_close(store.load(modality, data / name), live, rtol=1e-5, atol=1e-6)


def stage(params, data, base, out: Path, features_dir: Path | None) -> tuple[list[float], dict]:
    job = StageJob("micl-synth", "tiny", "finetune", 0, "image_cap", data, base, None, features_dir)
    train_stage(params, job, out, log=QUIET)
    return json.loads((out / "meta.json").read_text())["losses"], load_file(out / "model.safetensors")


def test_training_on_cached_features_matches_decoding(tiny_suite, tiny_base, cache, tmp_path):
    params, data = tiny_suite
    decoded_losses, decoded = stage(params, data, tiny_base, tmp_path / "decoded", None)
    cached_losses, cached = stage(params, data, tiny_base, tmp_path / "cached", cache)
    # Stated tolerance: the encoder ran on other batches (float sums in another order), nothing else differs.
    assert cached_losses == pytest.approx(decoded_losses, rel=1e-5)
    for key in decoded:
        torch.testing.assert_close(cached[key], decoded[key], rtol=1e-4, atol=1e-6)


def test_a_cache_of_other_encoders_is_refused(tiny_suite, tiny_base, cache, tmp_path):
    _, data = tiny_suite
    other = tmp_path / "base"
    shutil.copytree(tiny_base, other)
    encoder_file = next((other / "image_encoder").glob("*.safetensors"))
    state = load_file(encoder_file)
    name = next(iter(state))
    save_file({**state, name: state[name] + 1}, encoder_file)
    seal(other)
    model, processor = load_base(other)
    with pytest.raises(CheckpointError, match=r"other encoders.*re-run `mmcl encode-media`"):
        attach(model, processor, cache, other, data, log=QUIET)


def test_a_file_outside_the_cache_is_encoded_when_read(tiny_suite, tiny_base, cache, tmp_path):
    _, data = tiny_suite
    model, processor = load_base(tiny_base)
    store = attach(model, processor, cache, tiny_base, data, log=QUIET)
    name = json.loads((cache / "image.json").read_text())[0]
    elsewhere = tmp_path / "elsewhere.png"
    shutil.copy(data / name, elsewhere)
    torch.testing.assert_close(store.load("image", elsewhere), store.load("image", data / name), rtol=1e-5, atol=1e-6)
    worker = pickle.loads(pickle.dumps(store))  # what a DataLoader worker started by spawning gets
    with pytest.raises(FeatureCacheMiss, match=r"elsewhere\.png: not in the feature cache.*feature_cache: false"):
        worker.load("image", elsewhere)
    torch.testing.assert_close(worker.load("image", data / name), store.load("image", data / name))


def test_an_interrupted_job_resumes_after_its_last_shard(tiny_suite, tiny_base, cache, tmp_path, monkeypatch):
    params, data = tiny_suite
    params = copy.deepcopy(params)
    params.evaluation.batch_size = 4
    monkeypatch.setattr(features, "SHARD_BYTES", 1)  # one batch of files per shard
    out = tmp_path / "features"
    real = type(load_base(tiny_base)[0]).encode_files
    calls = {"n": 0}

    def failing(self, processor, modality, files):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # killed after two shards
        return real(self, processor, modality, files)

    monkeypatch.setattr(type(load_base(tiny_base)[0]), "encode_files", failing)
    with pytest.raises(KeyboardInterrupt):
        encode_suite_media(params, "micl-synth", "tiny", data, tiny_base, out, log=QUIET)
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "features.partial").glob("*.safetensors")}
    assert kept and not out.exists(), "an interrupted cache must not look complete"

    monkeypatch.setattr(type(load_base(tiny_base)[0]), "encode_files", real)
    encode_suite_media(params, "micl-synth", "tiny", data, tiny_base, out, log=QUIET)
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept, "finished shards were recomputed"
    model, processor = load_base(tiny_base)
    resumed = attach(model, processor, out, tiny_base, data, QUIET)
    whole = attach(model, processor, cache, tiny_base, data, QUIET)
    for modality, rows in resumed.rows.items():
        for name in rows:
            torch.testing.assert_close(resumed.load(modality, data / name), whole.load(modality, data / name))


def test_audio_reaches_the_llm_at_its_clip_length_decoded_or_cached(tiny_suite, tiny_base, tmp_path):
    """A clip shorter than the encoder's window (Whisper pads to 30 s) gives the LLM only the positions it
    fills, whether decoded at every step or read from the cache, which stores it cut: the two train alike."""
    import math

    import soundfile

    from mmcl.data.families import suite_families
    from mmcl.data.records import load_split
    from mmcl.engine.batching import Collator, InstructionDataset

    params, original = tiny_suite
    data = tmp_path / "data"
    shutil.copytree(original, data)
    samples = load_split(data, ["audio_cap"], "train")
    shortened = sorted({s.media[0] for s in samples})[::2]  # every other clip, to 40% of its length
    for name in shortened:
        wave, rate = soundfile.read(data / name, dtype="float32")
        soundfile.write(data / name, wave[: int(0.4 * len(wave))], rate)
    out = tmp_path / "features"
    encode_suite_media(params, "micl-synth", "tiny", data, tiny_base, out, log=QUIET)

    model, processor = load_base(tiny_base)
    full = model.num_media_tokens["audio"]
    store = attach(model, processor, out, tiny_base, data, log=QUIET)
    short = next(s for s in samples if s.media[0] in shortened)
    whole = next(s for s in samples if s.media[0] not in shortened)
    assert store.load("audio", data / short.media[0]).shape[0] == math.ceil(0.4 * full) < full
    assert store.load("audio", data / whole.media[0]).shape[0] == full

    placeholder = model.media_token_ids["audio"]
    collator = Collator.for_model(model, suite_families(params.suites["micl-synth"]))
    for reader in (processor, store):
        dataset = InstructionDataset([short, whole], data, reader)
        batch = collator.train_batch([dataset[0], dataset[1]])
        assert (batch["input_ids"] == placeholder).sum(1).tolist() == [math.ceil(0.4 * full), full]

    job = StageJob("micl-synth", "tiny", "finetune", 0, "audio_cap", data, tiny_base, None, None)
    train_stage(params, job, tmp_path / "decoded", log=QUIET)
    train_stage(params, StageJob(**{**job.__dict__, "features_dir": out}), tmp_path / "cached", log=QUIET)
    losses = [json.loads((tmp_path / d / "meta.json").read_text())["losses"] for d in ("decoded", "cached")]
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)  # the stated tolerance of the test above
