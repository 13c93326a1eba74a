"""Real datasets, end to end on small fixtures.

Each adapter gets a few items in its source's own layout, with real media (PNG/JPEG, WAV/FLAC, MP4/AVI
written with PyAV), packed as its real URL packs them and served from an HTTP server on 127.0.0.1
(files behind a login are placed by hand). They go through the commands the workflow's rules run
(`mmcl download`, `mmcl extract`, `mmcl convert`), and the converted media decode through
MediaProcessor. Bad downloads fail clearly and leave nothing complete; a suite of two converted
datasets trains and evaluates through Snakemake.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import (
    Source,
    as_json,
    converts,
    dataset_entry,
    fails,
    image,
    make_project,
    mmcl,
    served,
    sha256,
    write_params,
    zipped,
)
from test_download import serve

from mmcl.core.registry import ConfigError
from mmcl.data.records import read_jsonl, split_path
from mmcl.jobs.params import load_params

# --- media and archives, made here ----------------------------------------------------------------


def audio(rate: int, fmt: str = "WAV", seconds: float = 0.5) -> bytes:
    import soundfile

    t = np.arange(int(rate * seconds)) / rate
    out = io.BytesIO()
    soundfile.write(out, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format=fmt)
    return out.getvalue()


def video(fmt: str, frames: int = 6) -> bytes:
    """A clip whose frames brighten one step at a time (``mp4``: H.264; ``avi``: MPEG-4 part 2, as MSVD's)."""
    import av

    out = io.BytesIO()
    with av.open(out, "w", format=fmt) as container:
        stream = container.add_stream("libx264" if fmt == "mp4" else "mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for i in range(frames):
            pixels = np.full((24, 32, 3), 40 * i, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return out.getvalue()


def tarred(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def as_csv(header: list[str], rows: list[list]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


CORRUPT_JPEG = image(10)[:200]  # cut off: the header reads, the pixels do not


# --- one fixture per adapter ------------------------------------------------------------------------


def flickr30k() -> Source:
    captions = {
        "images": [
            {"filename": "1.jpg", "split": "train", "sentences": [{"raw": "A dog runs ."}, {"raw": "a dog\nin grass"}]},
            {"filename": "2.jpg", "split": "restval", "sentences": [{"raw": "Two cats ."}]},
            {"filename": "3.jpg", "split": "test", "sentences": [{"raw": "A red car ."}]},
            {"filename": "4.jpg", "split": "test", "sentences": [{"raw": "broken image"}]},
            {"filename": "5.jpg", "split": "test", "sentences": [{"raw": "not in the archive"}]},
        ]
    }
    decoy = {"images": [{"filename": "9.jpg", "split": "train", "sentences": [{"raw": "COCO, not Flickr"}]}]}
    images = {f"flickr30k-images/{i}.jpg": image(40 * i) for i in (1, 2, 3)} | {"flickr30k-images/4.jpg": CORRUPT_JPEG}
    prompt = "describe the image."
    return Source(
        "flickr30k",
        {"adapter": "karpathy", "captions": "dataset_flickr30k.json", "licence": "test"},
        {
            "caption_datasets.zip": (
                zipped({"dataset_flickr30k.json": as_json(captions), "dataset_coco.json": as_json(decoy)}),
                "zip",
            ),
            "flickr30k-images.zip": (zipped(images), "zip"),
        },
        expected={
            "train": {"1": (prompt, ["A dog runs .", "a dog in grass"]), "2": (prompt, ["Two cats ."])},
            "test": {"3": (prompt, ["A red car ."])},
        },
        skipped={"undecodable media": 1, "missing media": 1},
    )


def okvqa() -> Source:
    def split(subset: str, questions: list[tuple[int, int, str, list[str]]]):
        qs = {
            "data_subtype": subset,
            "questions": [{"question_id": q, "image_id": i, "question": t} for q, i, t, _ in questions],
        }
        anns = {
            "annotations": [{"question_id": q, "answers": [{"answer": a} for a in ans]} for q, _, _, ans in questions]
        }
        return qs, anns

    ten = ["race"] * 2 + ["motocross"] * 6 + ["dirt bike"] * 2
    train_q, train_a = split("train2014", [(90, 9, "What sport is this?", ten), (91, 9, "Where?", ["park"] * 10)])
    test_q, test_a = split("val2014", [(420, 42, "What is it made of?", ["wood"] * 4 + ["oak"] * 6)])
    return Source(
        "okvqa",
        {"adapter": "vqa", "licence": "test"},
        {
            "OpenEnded_mscoco_train2014_questions.json.zip": (
                zipped({"OpenEnded_mscoco_train2014_questions.json": as_json(train_q)}),
                "zip",
            ),
            "mscoco_train2014_annotations.json.zip": (
                zipped({"mscoco_train2014_annotations.json": as_json(train_a)}),
                "zip",
            ),
            "OpenEnded_mscoco_val2014_questions.json.zip": (
                zipped({"OpenEnded_mscoco_val2014_questions.json": as_json(test_q)}),
                "zip",
            ),
            "mscoco_val2014_annotations.json.zip": (
                zipped({"mscoco_val2014_annotations.json": as_json(test_a)}),
                "zip",
            ),
            "train2014.zip": (zipped({"train2014/COCO_train2014_000000000009.jpg": image(60)}), "zip"),
            "val2014.zip": (zipped({"val2014/COCO_val2014_000000000042.jpg": image(120)}), "zip"),
        },
        expected={
            "train": {
                "90": ("What sport is this?", ["motocross"] * 6 + ["race"] * 2 + ["dirt bike"] * 2),
                "91": ("Where?", ["park"] * 10),
            },
            "test": {"420": ("What is it made of?", ["oak"] * 6 + ["wood"] * 4)},
        },
    )


def msrvtt() -> Source:
    captions = {  # COCO style, as in the Frozen-in-Time archive: split by the official video ids
        "annotations": [
            {"image_id": "video0", "caption": "a man is cooking"},
            {"image_id": "video7010", "caption": "a cartoon plays"},
            {"image_id": "video0", "caption": "someone cooks food"},
        ]
    }
    members = {
        "MSRVTT/annotation/MSR_VTT.json": as_json(captions),
        "MSRVTT/videos/all/video0.mp4": video("mp4"),
        "MSRVTT/videos/all/video7010.mp4": video("mp4", frames=3),
        "__MACOSX/MSRVTT/videos/all/._video0.mp4": b"resource fork",
    }
    prompt = "describe the video."
    return Source(
        "msrvtt",
        {"adapter": "msrvtt", "licence": "test"},
        {"MSRVTT.zip": (zipped(members), "zip")},
        expected={
            "train": {"video0": (prompt, ["a man is cooking", "someone cooks food"])},
            "test": {"video7010": (prompt, ["a cartoon plays"])},
        },
    )


def msvd_qa() -> Source:
    def qa(i, vid, question, answer):
        return {"id": i, "video_id": vid, "question": question, "answer": answer}

    questions = {
        "MSVD-QA/train_qa.json": as_json([qa(0, 1, "what is a man doing?", "play"), qa(1, 2, "who sings?", "woman")]),
        "MSVD-QA/val_qa.json": as_json([qa(2, 1, "what plays?", "man")]),
        "MSVD-QA/test_qa.json": as_json([qa(3, 2, "what does a woman do?", "sing"), qa(4, 3, "gone?", "yes")]),
        "MSVD-QA/youtube_mapping.txt": b"-4wsuPCjDBc_5_15 vid1\nabc_1_9 vid2\nmissing_0_1 vid3\n",
    }
    clips = {"YouTubeClips/-4wsuPCjDBc_5_15.avi": video("avi"), "YouTubeClips/abc_1_9.avi": video("avi", 4)}
    return Source(
        "msvd_qa",
        {"adapter": "msvd_qa", "licence": "test", "manual": "download MSVD-QA.zip from the MEGA link"},
        {"YouTubeClips.tar": (tarred(clips), "tar"), "MSVD-QA.zip": (zipped(questions), "zip")},
        by_hand={"MSVD-QA.zip"},
        expected={
            "train": {"0": ("what is a man doing?", ["play"]), "1": ("who sings?", ["woman"])},
            "val": {"2": ("what plays?", ["man"])},
            "test": {"3": ("what does a woman do?", ["sing"])},
        },
        skipped={"missing media": 1},
    )


def audiocaps() -> Source:
    header = ["audiocap_id", "youtube_id", "start_time", "caption"]
    clips = {"clips/r1nicOVtvkQ.wav": audio(44100), "clips/UDGBjjwyaqE.flac": audio(48000, "FLAC")}
    prompt = "describe the audio."
    return Source(
        "audiocaps",
        {"adapter": "audiocaps", "licence": "test", "manual": "cut the clips from YouTube"},
        {
            "train.csv": (as_csv(header, [[91139, "r1nicOVtvkQ", 130, "A woman talks nearby as water pours"]]), "none"),
            "val.csv": (as_csv(header, [[7, "r1nicOVtvkQ", 130, "Water pours"]]), "none"),
            "test.csv": (
                as_csv(
                    header,
                    [[58146 + i, "UDGBjjwyaqE", 20, f"Clanging sounds {i}"] for i in range(5)]
                    + [[1, "gone000000", 30, "a clip no longer online"]],
                ),
                "none",
            ),
            "audio.tar": (tarred(clips), "tar"),
        },
        by_hand={"audio.tar"},
        expected={
            "train": {"r1nicOVtvkQ_130": (prompt, ["A woman talks nearby as water pours"])},
            "val": {"r1nicOVtvkQ_130": (prompt, ["Water pours"])},
            "test": {"UDGBjjwyaqE_20": (prompt, [f"Clanging sounds {i}" for i in range(5)])},
        },
        skipped={"missing media": 1},
    )


def clotho_aqa() -> Source:
    header = ["file_name", "QuestionText", "answer", "confidence"]

    def rows(file, question, answers):
        return [[file, question, answer, "yes"] for answer in answers]

    train = rows("Creek and frogs.wav", "Are birds chirping?", ["no", "yes", "yes"])
    train += rows("Creek and frogs.wav", "What animal croaks?", ["frog", "frogs", "toad"])
    test = rows("Rain.wav", "Is it raining?", ["yes", "yes", "yes"])
    audio_zip = zipped({"audio_files/Creek and frogs.wav": audio(44100), "audio_files/Rain.wav": audio(22050)})
    return Source(
        "clotho_aqa",
        {"adapter": "clotho_aqa", "licence": "test"},
        {
            "clotho_aqa_train.csv": (as_csv(header, train), "none"),
            "clotho_aqa_val.csv": (as_csv(header, rows("Rain.wav", "Loud?", ["no", "no", "yes"])), "none"),
            "clotho_aqa_test.csv": (as_csv(header, test), "none"),
            "audio_files.zip": (audio_zip, "zip"),
        },
        expected={
            "train": {
                "Creek and frogs-q1": ("Are birds chirping?", ["yes", "no"]),
                "Creek and frogs-q2": ("What animal croaks?", ["frog", "frogs", "toad"]),
            },
            "val": {"Rain-q1": ("Loud?", ["no", "yes"])},
            "test": {"Rain-q1": ("Is it raining?", ["yes"])},
        },
    )


SOURCES = [flickr30k, okvqa, msrvtt, msvd_qa, audiocaps, clotho_aqa]


# --- running the workflow's commands ---------------------------------------------------------------


@pytest.mark.parametrize("make", SOURCES, ids=lambda make: make.__name__)
def test_adapter_converts_its_source_through_the_rules_commands(make, tmp_path, default_params, processor, capsys):
    converts(make(), tmp_path, default_params, processor, capsys)


def test_video_frames_are_sampled_first_to_last(tmp_path):
    from mmcl.data.media import read_frames

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(video("mp4", frames=6))  # frame i has brightness 40 i
    shades = [round(np.asarray(frame).mean() / 40) for frame in read_frames(clip, 4)]
    assert shades == [0, 2, 3, 5]
    short = tmp_path / "short.mp4"
    short.write_bytes(video("mp4", frames=2))
    assert [round(np.asarray(f).mean() / 40) for f in read_frames(short, 4)] == [0, 0, 1, 1]


def test_embedded_benchmark_clips_still_load(tmp_path, processor):
    """micl-synth writes its clips as animated GIFs: the Pillow path stays."""
    from PIL import Image

    frames = [Image.new("RGB", (32, 32), (40 * i, 0, 0)) for i in range(4)]
    clip = tmp_path / "clip.gif"
    frames[0].save(clip, save_all=True, append_images=frames[1:], duration=100)
    assert processor.load("video", clip).shape == (4, 3, 32, 32)


def test_audio_is_resampled_to_the_encoders_rate(tmp_path):
    from mmcl.data.media import read_audio

    clip = tmp_path / "tone.flac"
    clip.write_bytes(audio(44100, "FLAC", seconds=1.0))
    wave = read_audio(clip, 16000)
    assert wave.dtype == np.float32 and len(wave) == 16000
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.argmax(spectrum) == 440  # 1 Hz bins over one second: the tone kept its pitch


# --- bad downloads: one clear error, nothing marked complete --------------------------------------


def nothing_complete(root: Path, name: str) -> None:
    downloads = root / "downloads" / name
    assert not (root / "data" / name).exists()
    if downloads.exists():  # no partial download, no half-unpacked archive, no temporary copy
        leftovers = [p.name for p in downloads.rglob("*") if p.name.endswith(".part") or p.name.startswith(".")]
        assert not leftovers, leftovers


def test_checksum_mismatch(tmp_path, default_params, capsys):
    source = clotho_aqa()
    with serve(served([source])) as server:
        entry = dataset_entry(source, server.url, tmp_path, sha256_of=lambda data: "0" * 64)
        params = write_params(tmp_path, default_params, {source.name: entry})
        out = tmp_path / "downloads/clotho_aqa/audio_files.zip"
        which = ["--dataset", "clotho_aqa", "--file", "audio_files.zip"]
        err = fails(capsys, "download", "--params", params, *which, "--out", out)
    data = source.files["audio_files.zip"][0]
    assert f"downloaded file has SHA-256 {sha256(data)}, expected {'0' * 64}" in err
    assert f"{out}.part was removed" in err
    assert not out.exists()
    nothing_complete(tmp_path, "clotho_aqa")


@pytest.mark.parametrize(("make", "file"), [(clotho_aqa, "audio_files.zip"), (msvd_qa, "YouTubeClips.tar")])
def test_truncated_archive(make, file, tmp_path, default_params, capsys):
    """Without a pinned SHA-256 a truncated archive downloads, with a warning saying how to pin it; it then
    fails to unpack, saying how to get it again."""
    source = make()
    data, kind = source.files[file]
    cut = data[: len(data) // 2]
    source.files[file] = (cut, kind)
    which = ["--dataset", source.name, "--file", file]
    with serve(served([source])) as server:
        entry = dataset_entry(source, server.url, tmp_path, sha256_of=lambda _: None)
        params = write_params(tmp_path, default_params, {source.name: entry})
        archive = tmp_path / "downloads" / source.name / file
        mmcl("download", "--params", params, *which, "--out", archive)
    warning = capsys.readouterr().out
    assert f"datasets.{source.name}.files.{file}.sha256 is null" in warning
    assert f"pin it with `sha256: {sha256(cut)}`" in warning
    out = archive.parent / "extracted" / file
    err = fails(capsys, "extract", "--params", params, *which, "--archive", archive, "--out", out)
    assert f"{archive}: cannot unpack this {kind} archive" in err and "truncated or corrupt" in err
    assert f"delete {archive} and run again to download it again" in err
    assert f"pinning datasets.{source.name}.files.{file}.sha256" in err
    assert not out.exists()
    convert = ["convert", "--params", params, "--dataset", source.name, "--sources", archive.parent]
    err = fails(capsys, *convert, "--out", tmp_path / "data" / source.name)
    assert "not there; obtain the dataset's files first" in err
    nothing_complete(tmp_path, source.name)


def test_missing_file_on_the_server(tmp_path, default_params, capsys):
    source = clotho_aqa()
    with serve({}) as server:
        params = write_params(tmp_path, default_params, {source.name: dataset_entry(source, server.url, tmp_path)})
        out = tmp_path / "downloads/clotho_aqa/clotho_aqa_train.csv"
        which = ["--dataset", "clotho_aqa", "--file", "clotho_aqa_train.csv"]
        err = fails(capsys, "download", "--params", params, *which, "--out", out)
    assert f"{server.url}/clotho_aqa/clotho_aqa_train.csv: HTTP 404" in err and "check the URL in params.yaml" in err
    assert not out.exists()
    nothing_complete(tmp_path, "clotho_aqa")


def test_file_behind_a_login_says_where_to_put_it(tmp_path, default_params, capsys):
    source = audiocaps()
    with serve(served([source])) as server:
        entry = dataset_entry(source, server.url, tmp_path)
    Path(entry["files"]["audio.tar"]["path"]).unlink()  # not placed yet
    params = write_params(tmp_path, default_params, {source.name: entry})
    out = tmp_path / "downloads/audiocaps/audio.tar"
    err = fails(capsys, "download", "--params", params, "--dataset", "audiocaps", "--file", "audio.tar", "--out", out)
    path, pinned = entry["files"]["audio.tar"]["path"], entry["files"]["audio.tar"]["sha256"]
    assert f"datasets.audiocaps.files.audio.tar: {path} does not exist, and this file is not downloaded" in err
    assert "cut the clips from YouTube" in err  # the dataset's `manual:` instruction
    assert f"Put it at {path}" in err and f"it will be checked against SHA-256 {pinned}" in err
    assert not out.exists()


# --- configuration ---------------------------------------------------------------------------------


def edit_dataset(default_params, tmp_path, edit) -> Path:
    params = copy.deepcopy(default_params)
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


BAD_CONFIGS = {
    "unknown-adapter": (
        lambda p: p["datasets"]["okvqa"].update(adapter="vqq"),
        ["datasets.okvqa.adapter", "unknown dataset adapter 'vqq'", "(did you mean 'vqa'?)"],
    ),
    "unknown-file-key": (
        lambda p: p["datasets"]["okvqa"]["files"]["val2014.zip"].update(archve="zip"),
        ["datasets.okvqa.files.val2014.zip", "unknown key 'archve'", "(did you mean 'archive'?)"],
    ),
    "unknown-adapter-setting": (
        lambda p: p["datasets"]["flickr30k"].update(caption="x.json"),
        ["datasets.flickr30k", "unknown key 'caption'", "(did you mean 'captions'?)"],
    ),
    "url-and-path": (
        lambda p: p["datasets"]["msrvtt"]["files"]["MSRVTT.zip"].update(path="MSRVTT.zip"),
        ["datasets.msrvtt.files.MSRVTT.zip: give `url` (downloaded) or `path`", "not both"],
    ),
    "bad-sha256": (
        lambda p: p["datasets"]["msrvtt"]["files"]["MSRVTT.zip"].update(sha256="abc"),
        ["datasets.msrvtt.files.MSRVTT.zip.sha256: expected 64 hexadecimal digits, got 'abc'"],
    ),
    "unknown-archive": (
        lambda p: p["datasets"]["msrvtt"]["files"]["MSRVTT.zip"].update(archive="zpi"),
        ["datasets.msrvtt.files.MSRVTT.zip.archive: unknown archive type 'zpi'", "(did you mean 'zip'?)"],
    ),
    "by-hand-without-manual": (
        lambda p: p["datasets"]["audiocaps"].pop("manual"),
        ["datasets.audiocaps.manual: audio.tar is placed by hand"],
    ),
    "task-of-another-kind": (
        lambda p: p["suites"]["micl-real"]["tasks"]["msvd_qa"].update(family="captioning"),
        ["suites.micl-real.tasks.msvd_qa: dataset 'msvd_qa' holds video qa (adapter msvd_qa)", "set family: qa"],
    ),
    "unknown-dataset": (
        lambda p: p["suites"]["micl-real"]["tasks"]["okvqa"].update(dataset="okvq"),
        ["suites.micl-real.tasks.okvqa.dataset: unknown dataset 'okvq'", "(did you mean 'okvqa'?)"],
    ),
    "dataset-in-generated-suite": (
        lambda p: p["suites"]["micl-synth"]["tasks"]["image_qa"].update(dataset="okvqa"),
        ["suites.micl-synth.tasks.image_qa.dataset: the 'micl_synth' generator writes its own tasks"],
    ),
    "unknown-metric": (
        lambda p: p["suites"]["micl-real"]["tasks"]["okvqa"].update(metric="vqa2"),
        ["suites.micl-real.tasks.okvqa.metric: unknown qa metric 'vqa2'", "(did you mean 'vqa'?)"],
    ),
    "metric-on-captioning": (
        lambda p: p["suites"]["micl-real"]["tasks"]["flickr30k"].update(metric="vqa"),
        ["suites.micl-real.tasks.flickr30k.metric: captioning tasks are scored one way", "remove `metric`"],
    ),
}


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=str)
def test_bad_dataset_config_fails_at_load(case, default_params, tmp_path):
    edit, fragments = BAD_CONFIGS[case]
    path = edit_dataset(default_params, tmp_path, edit)
    with pytest.raises(ConfigError) as err:
        load_params(path)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_repository_params_define_the_real_suite(repo_root):
    params = load_params(repo_root / "params.yaml")
    assert params.grid.suite == "micl-synth"  # the default stays the embedded benchmark
    real = params.suites["micl-real"]
    assert real.orders["micl-1"] == ["audiocaps", "flickr30k", "msvd_qa", "clotho_aqa", "okvqa", "msrvtt"]
    assert real.orders["micl-2"] == ["flickr30k", "msrvtt", "msvd_qa", "okvqa", "audiocaps", "clotho_aqa"]
    assert [task for task, config in real.tasks.items() if config.metric == "vqa"] == ["okvqa"]


# --- scoring -----------------------------------------------------------------------------------------


def test_vqa_metric_counts_annotators():
    from mmcl.data.families.qa import QuestionAnswering

    ten = ["red"] * 4 + ["maroon"] * 2 + ["dark red"] + ["crimson"] * 3
    refs = {i: ten for i in range(5)}
    preds = {0: "Red", 1: "maroon", 2: "dark red", 3: "blue", 4: "crimson"}
    # min(1, n/3): red 4 -> 1, maroon 2 -> 2/3, dark red 1 -> 1/3, blue 0, crimson 3 -> 1; mean 3/5
    assert QuestionAnswering("vqa").score({"okvqa": (preds, refs)})["okvqa"]["accuracy"] == pytest.approx(60.0)
    # exact match: any listed answer is right
    assert QuestionAnswering().score({"okvqa": (preds, refs)})["okvqa"]["accuracy"] == pytest.approx(80.0)


def test_each_task_is_scored_with_its_metric(repo_root):
    from mmcl.data.records import Sample
    from mmcl.jobs.evaluate import score

    params = load_params(repo_root / "params.yaml")
    tasks = params.suites["micl-real"].tasks
    answers = ["oak"] * 2 + ["wood"] * 8  # 'oak': exact match right, vqa 2/3
    samples = {
        task: [Sample(f"{task}-0", task, config.modality, "q", answers if config.family == "qa" else ["a cat"])]
        for task, config in tasks.items()
    }
    predictions = {task: {f"{task}-0": "oak" if config.family == "qa" else "a cat"} for task, config in tasks.items()}
    scores = score(params, "micl-real", predictions, samples)
    assert scores["okvqa"]["metrics"]["accuracy"] == pytest.approx(200 / 3)
    assert scores["msvd_qa"]["metrics"]["accuracy"] == scores["clotho_aqa"]["metrics"]["accuracy"] == 100.0
    assert set(scores["flickr30k"]["metrics"]) == {"cider", "bleu4", "rouge_l"}


# --- a suite of converted datasets through Snakemake -------------------------------------------------


@pytest.mark.slow
def test_two_stages_on_converted_datasets_through_snakemake(tmp_path, default_params):
    """OK-VQA (zip archives from URLs) then AudioCaps (CSVs from URLs, audio placed by hand): every rule,
    from the downloads to the report."""
    sources = [okvqa(), audiocaps()]
    params = copy.deepcopy(default_params)
    params["suites"] = {
        "real2": {
            "generator": "datasets",
            "tasks": {
                "okvqa": {"family": "qa", "modality": "image", "dataset": "okvqa", "metric": "vqa"},
                "audiocaps": {"family": "captioning", "modality": "audio", "dataset": "audiocaps"},
            },
            "orders": {"two": ["okvqa", "audiocaps"]},
        }
    }
    params["presets"] = {}
    params["grid"] = {"suite": "real2", "orders": ["two"], "methods": ["finetune"], "backbones": ["tiny"], "seeds": [0]}
    # Real data has no perception set to pretrain encoders on, nor a text task for stage 0: both are skipped.
    params["backbones"]["tiny"]["encoder_pretraining"] = {"steps": {"image": 0, "audio": 0}}
    params["train"].update(steps=3, task_steps={}, batch_size=2, log_every=1, checkpoint_every=0)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    with serve(served(sources)) as server:
        params["datasets"] = {s.name: dataset_entry(s, server.url, tmp_path) for s in sources}
        project = make_project(tmp_path / "project", params)
        done = subprocess.run(
            [str(bin_dir / "snakemake"), "--cores", "2"], cwd=project, env=env, capture_output=True, text=True
        )
    assert done.returncode == 0, done.stderr[-3000:]

    assert (project / "downloads/audiocaps/audio.tar").resolve() == Path(
        params["datasets"]["audiocaps"]["files"]["audio.tar"]["path"]
    )
    assert json.loads((project / "data/audiocaps/prepare.json").read_text())["skipped"] == {"missing media": 1}
    [train] = read_jsonl(split_path(project / "data/real2", "audiocaps", "train"))
    assert train.task == "audiocaps" and train.media == ["../audiocaps/media/r1nicOVtvkQ.wav"]
    stages = project / "results/real2/tiny/finetune/seed0/stages"
    for stage, task in (("okvqa", "okvqa"), ("okvqa+audiocaps", "audiocaps")):
        meta = json.loads((stages / stage / "checkpoint/meta.json").read_text())
        assert meta["tasks"] == [task] and meta["losses"][-1] < meta["losses"][0], meta
    scores = json.loads((stages / "okvqa+audiocaps/eval/scores.json").read_text())
    assert {task: entry["n"] for task, entry in scores.items()} == {"okvqa": 1, "audiocaps": 1}
    assert "accuracy" in scores["okvqa"]["metrics"] and "cider" in scores["audiocaps"]["metrics"]
    assert (project / "reports/real2/two/tiny/table.md").exists()

    # A colleague who pulls the converted data (`dvc pull`: data/<dataset>, not downloads/) trains on it
    # without downloading anything again.
    shutil.rmtree(project / "downloads")
    shutil.rmtree(project / "results")
    plan = subprocess.run(
        [str(bin_dir / "snakemake"), "-n"], cwd=project, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "rule train_stage:" in plan
    for rule in ("download", "extract", "convert"):
        assert f"rule {rule}:" not in plan
