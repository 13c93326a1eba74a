"""The continual-LLaVA study's real datasets, end to end on small fixtures (as in test_datasets.py).

Each source gets a few items in its own layout with real JPEG/PNG images, packed as its real URL packs
them, under the file names and adapter settings of the repository's params.yaml entry, served from
127.0.0.1 and taken through the commands the rules run (`mmcl download`, `mmcl extract`, `mmcl convert`).
"""

from __future__ import annotations

import collections
import copy
import hashlib
import io
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import (
    Source,
    as_json,
    check_converted,
    dataset_entry,
    image,
    mmcl,
    prepare,
    served,
    write_params,
    zipped,
)
from test_datasets import CORRUPT_JPEG, nothing_complete, tarred
from test_download import serve

from mmcl.core.registry import ConfigError
from mmcl.jobs.params import load_params


def repo_entry(default_params: dict, name: str, files: dict, **settings) -> dict:
    """The repository's params.yaml entry of dataset ``name`` without its files (the fixture serves them,
    under the names that entry lists), with ``settings`` changed."""
    entry = copy.deepcopy(default_params["datasets"][name])
    assert sorted(entry.pop("files", {})) == sorted(files), f"the fixture packs the files datasets.{name} lists"
    return entry | settings


def held_out_image(paths: list[str]) -> str:
    """The image a `test_images: 1` setting holds out: the smallest SHA-256 of its path."""
    return min(paths, key=lambda path: hashlib.sha256(path.encode()).hexdigest())


# --- LLaVA-1.5: alignment captions and the instruction mixture ---------------------------------------


def conversation(*texts: str) -> list[dict]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": text} for i, text in enumerate(texts)]


def llava_align(default_params) -> Source:
    def item(number: str, prompt: str, caption: str) -> dict:
        return {"id": number, "image": f"{number[:5]}/{number}.jpg", "conversations": conversation(prompt, caption)}

    captions = [
        item("000000001", "Give a brief description of the image.\n<image>", "a dog on a beach"),
        item("000000002", "<image>\nRender a clear and concise summary of the photo.", "two cats"),
        item("000010003", "<image>\nShare a concise interpretation of the image provided.", "a red  car"),
        item("000010004", "<image>\nDescribe the image concisely.", "a broken file"),
    ]
    assert held_out_image([c["image"] for c in captions]) == "00001/000010003.jpg"
    images = {c["image"]: image(50 * i) for i, c in enumerate(captions[:3])} | {"00001/000010004.jpg": CORRUPT_JPEG}
    files = {
        "blip_laion_cc_sbu_558k.json": (as_json(captions), "none"),
        "images.zip": (zipped(images), "zip"),
    }
    return Source(
        "llava_align",
        repo_entry(default_params, "llava_align", files, test_images=1),
        files,
        expected={
            "train": {
                "000000001": ("Give a brief description of the image.", ["a dog on a beach"]),
                "000000002": ("Render a clear and concise summary of the photo.", ["two cats"]),
            },
            "test": {"000010003": ("Share a concise interpretation of the image provided.", ["a red car"])},
        },
        skipped={"undecodable media": 1},
    )


SHORT = "Answer the question using a single word or phrase."
LETTER = "Answer with the option's letter from the given choices directly."
DESCRIBES = "Please provide the bounding box coordinate of the region this sentence describes:"
REGION = "Please provide a short description for this region:"
CAPTION = "Provide a one-sentence caption for the provided image."
BOX = "[0.1, 0.2, 0.5, 0.9]"


def mixture() -> list[dict]:
    """One conversation of each source set of llava_v1_5_mix665k.json, in its format."""

    def item(id_: str, path: str | None, *texts: str) -> dict:
        return {"id": id_, **({"image": path} if path else {}), "conversations": conversation(*texts)}

    coco = "coco/train2017/{:012d}.jpg".format
    ask = f"<image>\nWho wrote this book?\n{SHORT}"
    return [
        item("000000000001", coco(1), "<image>\nWhat is the bus doing?", "Parked\nat a stop.", "Why?", "It is empty."),
        # VQAv2, GQA, A-OKVQA
        item("2", coco(2), f"<image>\nWhat color is the car?\n{SHORT}", "Red", f"How many wheels?\n{SHORT}", "4"),
        item("gqa1", "gqa/images/2354786.jpg", f"<image>\nIs it sunny?\n{SHORT}", "Yes"),
        item("aok", coco(4), f"<image>\nWhat is the man holding?\nA. a bat\nB. a ball\n{LETTER}", "A"),
        # OCR-VQA, TextCaps
        item("140031996X", "ocr_vqa/images/140031996X.jpg", ask, "Jane Doe", "Is this a cookbook?", "No"),
        item("tc", "textvqa/train_images/0054c91397f2fe05.jpg", f"<image>\n{CAPTION}", "A STOP sign."),
        # RefCOCO, Visual Genome
        item("ref", coco(3), f"<image>\n{DESCRIBES} man on left.", BOX, f"{REGION} [0.52, 0.1, 0.98, 0.95].", "Woman."),
        item("vg", "vg/VG_100K/2.jpg", f"<image>\n{REGION} [0.3, 0.35, 0.6, 0.8].", "A red kite."),
        item("sharegpt", None, "Write a poem.", "Roses are red."),  # text-only: no group
        item("000000000009", coco(9), "<image>\nWhat is this?", "A cat."),  # its image is missing
        item("000000000001", coco(1), "Describe the image in detail.\n<image>", "A bus\n\nparked by a curb."),
        item("000000000005", coco(5), "<image>\nWhat could the dog want?", "To play."),
    ]


def llava_groups(default_params) -> list[Source]:
    """The four task groups: llava_instruct with the mixture's files, the others reading them (files_from)."""
    entries = mixture()
    # conversation held out by `test_images: 1`, and the group's conversations with an image
    tested = {"instruct": (0, [0, 9, 11]), "vqa": (3, [1, 2, 3]), "ocr": (4, [4, 5]), "ref": (6, [6, 7])}
    for test, members in tested.values():
        assert held_out_image([entries[i]["image"] for i in members]) == entries[test]["image"]
    coco = {f"train2017/{n:012d}.jpg": image(20 * n) for n in (1, 2, 3, 4, 5)}
    files = {
        "llava_v1_5_mix665k.json": (as_json(entries), "none"),
        "train2017.zip": (zipped(coco), "zip"),
        "gqa_images.zip": (zipped({"images/2354786.jpg": image(200)}), "zip"),
        # saved as .jpg whatever the cover's format, as LLaVA's instructions say
        "ocr_vqa_images.tar": (tarred({"images/140031996X.jpg": image(210, "PNG")}), "tar"),
        "train_val_images.zip": (zipped({"train_images/0054c91397f2fe05.jpg": image(220)}), "zip"),
        "vg_images.zip": (zipped({"VG_100K/2.jpg": image(230)}), "zip"),
        "vg_images2.zip": (zipped({"VG_100K_2/2417997.jpg": image(240)}), "zip"),
    }
    question = f"user : What color is the car? {SHORT}"
    expected = {
        "instruct": {
            "train": {"11-1": ("user : What could the dog want?", ["To play."])},
            "test": {
                "0-1": ("user : What is the bus doing?", ["Parked at a stop."]),
                "0-2": (
                    "user : What is the bus doing? assistant : Parked at a stop. user : Why?",
                    ["It is empty."],
                ),
                "10-1": ("user : Describe the image in detail.", ["A bus parked by a curb."]),
            },
        },
        "vqa": {
            "train": {
                "1-1": (question, ["Red"]),
                "1-2": (f"{question} assistant : Red user : How many wheels? {SHORT}", ["4"]),
                "2-1": (f"user : Is it sunny? {SHORT}", ["Yes"]),
            },
            "test": {"3-1": (f"user : What is the man holding? A. a bat B. a ball {LETTER}", ["A"])},
        },
        "ocr": {
            "train": {"5-1": (f"user : {CAPTION}", ["A STOP sign."])},
            "test": {
                "4-1": (f"user : Who wrote this book? {SHORT}", ["Jane Doe"]),
                "4-2": (f"user : Who wrote this book? {SHORT} assistant : Jane Doe user : Is this a cookbook?", ["No"]),
            },
        },
        "ref": {
            "train": {"7-1": (f"user : {REGION} [0.3, 0.35, 0.6, 0.8].", ["A red kite."])},
            "test": {
                "6-1": (f"user : {DESCRIBES} man on left.", [BOX]),
                "6-2": (
                    f"user : {DESCRIBES} man on left. assistant : {BOX} user : {REGION} [0.52, 0.1, 0.98, 0.95].",
                    ["Woman."],
                ),
            },
        },
    }
    groups = []
    for group in ("instruct", "vqa", "ocr", "ref"):
        name = f"llava_{group}"
        owned = files if group == "instruct" else {}
        entry = repo_entry(default_params, name, owned, test_images=1)
        assert entry["group"] == group and entry.get("files_from", "llava_instruct") == "llava_instruct"
        skipped = {"missing media": 1} if group == "instruct" else {}  # conversation 9's image
        by_hand = {"ocr_vqa_images.tar"} if owned else set()
        groups.append(Source(name, entry, owned, by_hand=by_hand, expected=expected[group], skipped=skipped))
    return groups


def test_alignment_captions_convert(tmp_path, default_params, processor):
    source = llava_align(default_params)
    with serve(served([source])) as server:
        params = write_params(tmp_path, default_params, {source.name: dataset_entry(source, server.url, tmp_path)})
        data = prepare(params, tmp_path, source)
    check_converted(data, source, processor)


def test_mixture_groups_convert_one_download(tmp_path, default_params, processor):
    """The owner's files are downloaded once; every group converts them into its own dataset."""
    owner, *others = llava_groups(default_params)
    with serve(served([owner])) as server:
        datasets = {source.name: dataset_entry(source, server.url, tmp_path) for source in (owner, *others)}
        params = write_params(tmp_path, default_params, datasets)
        check_converted(prepare(params, tmp_path, owner), owner, processor)
    downloads = tmp_path / "downloads" / owner.name
    for source in others:
        out = tmp_path / "data" / source.name
        mmcl("convert", "--params", params, "--dataset", source.name, "--sources", downloads, "--out", out)
        check_converted(out, source, processor)
        summary = json.loads((out / "prepare.json").read_text())
        assert summary["files_from"] == owner.name and sorted(summary["files"]) == sorted(owner.files)
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == [owner.name]


def test_a_group_names_the_dataset_that_downloads_its_files(tmp_path, default_params, capsys):
    params = write_params(tmp_path, default_params, copy.deepcopy(default_params["datasets"]))
    out = tmp_path / "downloads/llava_vqa/train2017.zip"
    with pytest.raises(SystemExit) as exit_:
        mmcl("download", "--params", params, "--dataset", "llava_vqa", "--file", "train2017.zip", "--out", out)
    assert exit_.value.code == 2  # a configuration error
    err = capsys.readouterr().err
    assert "datasets.llava_vqa: reads the files of dataset 'llava_instruct' (files_from)" in err
    assert not out.exists()


def test_workflow_downloads_shared_files_once(repo_root):
    """Each group's convert job reads llava_instruct's downloads; nothing is downloaded for the others."""
    bin_dir = Path(sys.executable).parent
    targets = [f"data/llava_{group}/prepare.json" for group in ("instruct", "vqa", "ocr", "ref")]
    done = subprocess.run(
        [str(bin_dir / "snakemake"), "-n", "-p", *targets], cwd=repo_root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = [line.split("output: ", 1)[1] for line in done.stdout.splitlines() if "output: " in line]
    downloads = [o for o in outputs if o.startswith("downloads/")]
    assert downloads and all(o.startswith("downloads/llava_instruct/") for o in downloads)
    assert len([o for o in downloads if "/extracted/" not in o]) == 7  # each file once
    for group in ("instruct", "vqa", "ocr", "ref"):
        assert f"--dataset llava_{group} --sources downloads/llava_instruct --out data/llava_{group}" in done.stdout


# --- evaluation sets ---------------------------------------------------------------------------------


def vqav2(default_params) -> Source:
    """The `vqa` adapter on VQA v2's file names (its zips hold one JSON each, as the VQA site packs them)."""

    def split(questions: list[tuple[int, int, str, list[str]]]):
        qs = {"questions": [{"question_id": q, "image_id": i, "question": t} for q, i, t, _ in questions]}
        anns = {
            "annotations": [{"question_id": q, "answers": [{"answer": a} for a in ans]} for q, _, _, ans in questions]
        }
        return as_json(qs), as_json(anns)

    train_q, train_a = split([(90, 9, "Is this a bus?", ["yes"] * 10)])
    test_q, test_a = split([(420, 42, "How many?", ["2"] * 7 + ["two"] * 3), (421, 43, "Gone?", ["yes"] * 10)])
    files = {
        "v2_Questions_Train_mscoco.zip": (zipped({"v2_OpenEnded_mscoco_train2014_questions.json": train_q}), "zip"),
        "v2_Annotations_Train_mscoco.zip": (zipped({"v2_mscoco_train2014_annotations.json": train_a}), "zip"),
        "v2_Questions_Val_mscoco.zip": (zipped({"v2_OpenEnded_mscoco_val2014_questions.json": test_q}), "zip"),
        "v2_Annotations_Val_mscoco.zip": (zipped({"v2_mscoco_val2014_annotations.json": test_a}), "zip"),
        "train2014.zip": (zipped({"train2014/COCO_train2014_000000000009.jpg": image(60)}), "zip"),
        "val2014.zip": (zipped({"val2014/COCO_val2014_000000000042.jpg": image(120)}), "zip"),
    }
    return Source(
        "vqav2",
        repo_entry(default_params, "vqav2", files),
        files,
        expected={
            "train": {"90": ("Is this a bus?", ["yes"] * 10)},
            "test": {"420": ("How many?", ["2"] * 7 + ["two"] * 3)},
        },
        skipped={"missing media": 1},
    )


def gqa(default_params) -> Source:
    def questions(*items: tuple[str, str, str, str]) -> bytes:
        return as_json(
            {key: {"imageId": img, "question": q, "answer": a, "fullAnswer": f"{a}."} for key, img, q, a in items}
        )

    archive = {
        "val_balanced_questions.json": questions(
            ("05515938", "2354786", "Is the sky blue?", "yes"), ("05515939", "2354786", "What is on the table?", "cup")
        ),
        "testdev_balanced_questions.json": questions(
            ("201307251", "n161313", "Is it overcast?", "no"), ("201307252", "n999999", "Gone?", "yes")
        ),
        "train_balanced_questions.json": questions(("1", "1", "Not read by default?", "yes")),
    }
    files = {
        "questions1.2.zip": (zipped(archive), "zip"),
        "images.zip": (zipped({"images/2354786.jpg": image(30), "images/n161313.jpg": image(90, "PNG")}), "zip"),
    }
    return Source(
        "gqa",
        repo_entry(default_params, "gqa", files),
        files,
        expected={
            "train": {"05515938": ("Is the sky blue?", ["yes"]), "05515939": ("What is on the table?", ["cup"])},
            "test": {"201307251": ("Is it overcast?", ["no"])},
        },
        skipped={"missing media": 1},
    )


def textvqa(default_params) -> Source:
    def questions(split: str, *items: tuple[int, str, str, list[str]]) -> bytes:
        data = [
            {"question_id": q, "image_id": i, "question": t, "answers": a, "set_name": split} for q, i, t, a in items
        ]
        return as_json({"dataset_type": split, "dataset_name": "textvqa", "dataset_version": "0.5.1", "data": data})

    ten = ["nous les gosses"] * 4 + ["dakota"] * 6
    files = {
        "TextVQA_0.5.1_train.json": (questions("train", (0, "0054c91397f2fe05", "what is the brand?", ten)), "none"),
        "TextVQA_0.5.1_val.json": (questions("val", (34602, "003a8ae2ef43b901", "what is it?", ["stop"] * 10)), "none"),
        "train_val_images.zip": (
            zipped({"train_images/0054c91397f2fe05.jpg": image(70), "train_images/003a8ae2ef43b901.jpg": image(140)}),
            "zip",
        ),
    }
    return Source(
        "textvqa",
        repo_entry(default_params, "textvqa", files),
        files,
        expected={
            "train": {"0": ("what is the brand?", ["dakota"] * 6 + ["nous les gosses"] * 4)},
            "test": {"34602": ("what is it?", ["stop"] * 10)},
        },
    )


def refs_pickle(refs: list) -> bytes:
    return pickle.dumps(refs, protocol=2)  # the protocol of the refer toolkit's Python 2 pickles


def refcoco(default_params) -> Source:
    def ref(ref_id: int, ann: int, image_id: int, split: str, *sentences: tuple[int, str]) -> dict:
        said = [{"sent_id": s, "sent": text, "raw": text.upper(), "tokens": text.split()} for s, text in sentences]
        return {"ref_id": ref_id, "ann_id": ann, "image_id": image_id, "split": split, "sentences": said}

    refs = [
        ref(0, 1719310, 581857, "train", (0, "the lady with the blue shirt"), (1, "lady in blue")),
        ref(1, 7, 581857, "testA", (2, "right half")),
        ref(2, 8, 9, "testB", (3, "everything")),
        ref(3, 7, 581857, "val", (4, "man on right")),
    ]
    instances = {  # the images are 40 x 30 pixels
        "images": [
            {"id": 581857, "file_name": "COCO_train2014_000000581857.jpg", "width": 40, "height": 30},
            {"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "width": 40, "height": 30},
        ],
        "annotations": [
            {"id": 1719310, "image_id": 581857, "bbox": [4, 3, 20, 15], "category_id": 1},
            {"id": 7, "image_id": 581857, "bbox": [20, 0, 20, 30], "category_id": 1},
            {"id": 8, "image_id": 9, "bbox": [0, 0, 40, 30], "category_id": 2},
        ],
    }
    archive = {
        "refcoco/refs(unc).p": refs_pickle(refs),
        "refcoco/refs(google).p": refs_pickle([ref(9, 8, 9, "train", (9, "the google split, not read"))]),
        "refcoco/instances.json": as_json(instances),
    }
    coco = {f"train2014/COCO_train2014_{n:012d}.jpg": image(n % 250) for n in (581857, 9)}
    files = {"refcoco.zip": (zipped(archive), "zip"), "train2014.zip": (zipped(coco), "zip")}

    def asked(expression: str) -> str:
        return f"{DESCRIBES} {expression}"

    return Source(
        "refcoco",
        repo_entry(default_params, "refcoco", files),
        files,
        expected={
            "train": {
                "0-0": (asked("the lady with the blue shirt"), ["[0.10, 0.10, 0.60, 0.60]"]),
                "0-1": (asked("lady in blue"), ["[0.10, 0.10, 0.60, 0.60]"]),
            },
            "val": {"3-4": (asked("man on right"), ["[0.50, 0.00, 1.00, 1.00]"])},
            "test": {
                "1-2": (asked("right half"), ["[0.50, 0.00, 1.00, 1.00]"]),
                "2-3": (asked("everything"), ["[0.00, 0.00, 1.00, 1.00]"]),
            },
        },
    )


@pytest.mark.parametrize("make", [vqav2, gqa, textvqa, refcoco], ids=lambda make: make.__name__)
def test_evaluation_set_converts(make, tmp_path, default_params, processor):
    source = make(default_params)
    with serve(served([source])) as server:
        params = write_params(tmp_path, default_params, {source.name: dataset_entry(source, server.url, tmp_path)})
        data = prepare(params, tmp_path, source)
    check_converted(data, source, processor)


def test_refs_file_with_objects_is_refused(tmp_path, default_params, capsys):
    """A refs pickle runs no code: one that names a class fails, and nothing is marked converted."""
    source = refcoco(default_params)
    data, kind = source.files["refcoco.zip"]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["refcoco/refs(unc).p"] = refs_pickle(collections.OrderedDict(ref_id=0))
    source.files["refcoco.zip"] = (zipped(members), kind)
    with serve(served([source])) as server:
        params = write_params(tmp_path, default_params, {source.name: dataset_entry(source, server.url, tmp_path)})
        with pytest.raises(SystemExit):
            prepare(params, tmp_path, source)
    err = capsys.readouterr().err
    assert "refs(unc).p: not a refer toolkit refs file" in err and "collections.OrderedDict" in err
    nothing_complete(tmp_path, source.name)


# --- configuration and scoring ---------------------------------------------------------------------------


def test_repository_params_define_the_llava_real_suite(repo_root):
    params = load_params(repo_root / "params.yaml")
    suite = params.suites["llava-real"]
    assert suite.generator == "datasets" and suite.orders["ivor"] == ["instruct", "vqa", "ocr", "ref"]
    groups = {task: params.datasets[suite.tasks[task].dataset] for task in suite.orders["ivor"]}
    assert {task: dataset.group for task, dataset in groups.items()} == {t: t for t in groups}
    assert {dataset.files_from for dataset in groups.values()} == {None, "llava_instruct"}
    metrics = {task: config.metric for task, config in suite.tasks.items() if task not in suite.orders["ivor"]}
    assert metrics == {"align": None, "vqav2": "vqa", "gqa": None, "textvqa": "vqa", "refcoco": "box"}
    configuration = load_params(repo_root / "workflow/presets/llava-real.yaml")
    assert configuration.grid.suite == "llava-real" and configuration.grid.backbones[0] == "llava-pythia-160m"
    assert configuration.evaluation.max_new_tokens >= 24  # room for a box


BAD_CONFIGS = {
    "unknown-group": (
        lambda d: d["llava_vqa"].update(group="vqq"),
        ["datasets.llava_vqa: group 'vqq' is not a task group of the mixture (did you mean 'vqa'?)"],
    ),
    "files-and-files-from": (
        lambda d: d["llava_vqa"].update(files={"x.json": {"url": "http://x/x.json"}}),
        ["datasets.llava_vqa: give `files` or `files_from` (another dataset's files), not both"],
    ),
    "files-from-unknown": (
        lambda d: d["llava_vqa"].update(files_from="llava_instrct"),
        ["datasets.llava_vqa.files_from: unknown dataset 'llava_instrct' (did you mean 'llava_instruct'?)"],
    ),
    "files-from-a-reader": (
        lambda d: d["llava_vqa"].update(files_from="llava_ocr"),
        ["datasets.llava_vqa.files_from: dataset 'llava_ocr' reads the files of 'llava_instruct' itself"],
    ),
    "no-held-out-images": (
        lambda d: d["llava_align"].update(test_images=0),
        ["datasets.llava_align.test_images: must be > 0, got 0"],
    ),
    "prompt-without-expression": (
        lambda d: d["refcoco"].update(prompt="Where is it?"),
        ["datasets.refcoco: prompt 'Where is it?' has no {expression}"],
    ),
}


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=str)
def test_bad_llava_dataset_config_fails_at_load(case, default_params, tmp_path):
    edit, fragments = BAD_CONFIGS[case]
    params = copy.deepcopy(default_params)
    edit(params["datasets"])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_params(path)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_box_metric_scores_overlap_not_text():
    from mmcl.metrics.qa import box_accuracy

    reference = ["[0.10, 0.10, 0.60, 0.60]"]
    assert box_accuracy("[0.1, 0.1, 0.6, 0.6]", reference) == 1.0  # other decimals, same box
    assert box_accuracy("it is at [0.12,0.1,0.62,0.58].", reference) == 1.0  # IoU 0.85, text around it
    assert box_accuracy("[0.35, 0.35, 0.85, 0.85]", reference) == 0.0  # IoU 0.33
    assert box_accuracy("[0.6, 0.6, 0.1, 0.1]", reference) == 0.0  # corners swapped: an empty box
    assert box_accuracy("top left", reference) == 0.0  # no box


def test_llava_real_tasks_are_scored_with_their_metrics(repo_root):
    from mmcl.data.records import Sample
    from mmcl.jobs.evaluate import score

    params = load_params(repo_root / "params.yaml")
    tasks = ("vqav2", "gqa", "textvqa", "refcoco")
    answers = {
        "vqav2": (["red"] * 2 + ["maroon"] * 8, "red"),  # vqa: 2 of the 3 annotators it takes
        "gqa": (["no"], "No"),  # exact match
        "textvqa": (["stop"] * 10, "stop"),
        "refcoco": (["[0.10, 0.10, 0.60, 0.60]"], "[0.12, 0.1, 0.62, 0.58]"),  # box: IoU >= 0.5
    }
    others = {task: (["a cat"], "a dog") for task in params.suites["llava-real"].tasks if task not in answers}
    samples = {task: [Sample(f"{task}-0", task, "image", "q", refs)] for task, (refs, _) in (answers | others).items()}
    predictions = {task: {f"{task}-0": said} for task, (_, said) in (answers | others).items()}
    scores = score(params, "llava-real", predictions, samples)
    accuracy = {task: scores[task]["metrics"]["accuracy"] for task in tasks}
    assert accuracy == pytest.approx({"vqav2": 200 / 3, "gqa": 100.0, "textvqa": 100.0, "refcoco": 100.0})
