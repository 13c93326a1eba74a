"""LLaVA-1.5's instruction mixture (``llava_v1_5_mix665k.json``) split into the continual-LLaVA study's
four task groups, one dataset per group (``group:``), each converting the same download (``files_from``)::

    [{"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
      "conversations": [{"from": "human", "value": "<image>\\nWhat are the colors of the bus in the image?"},
                        {"from": "gpt", "value": "The bus in the image is white and red."}, ...]}, ...]

The file does not say which source set a conversation comes from, so the group follows from what it
carries, the first rule that applies deciding:

- ``ref`` (RefCOCO, Visual Genome regions): a turn holds a box "[x1, y1, x2, y2]" (a region to describe,
  or the answer to "Please provide the bounding box coordinate of the region this sentence describes");
- ``ocr`` (OCR-VQA, TextCaps): an image under ``ocr_vqa/`` or ``textvqa/``;
- ``vqa`` (VQAv2, GQA, OK-VQA, A-OKVQA): an image under ``gqa/``, or a COCO image whose first question
  asks for a short answer with one of LLaVA-1.5's prompts for those sets (``SHORT_ANSWER``);
- ``instruct`` (LLaVA-158K: conversations, detailed descriptions, complex reasoning): any other COCO image.

Text-only conversations (ShareGPT) belong to no group: every task here reads an image.

Each reply becomes a sample, the conversation up to it flattened as the llava-synth ``instruct`` task
flattens its conversations (``llava_synth.flatten``: the earlier turns and the reply's question make the
instruction, the reply is the answer), so every reply is supervised, as in LLaVA's training. The
``<image>`` placeholder is dropped (the image is the sample's media). A sample's key is the
conversation's position in the file and the reply's number (ids repeat in the file).

The mixture has no test split: the conversations about the ``test_images`` images with the smallest
SHA-256 of their path are the group's test split (all of an image's conversations, so no test image is
trained on). Images are found by file name among the dataset's files (GQA's images are Visual Genome's,
under the same numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmcl.config.ranges import positive
from mmcl.config.schema import DatasetConfig
from mmcl.core.registry import ConfigError, closest
from mmcl.data import SOURCES
from mmcl.data.generators.llava_synth import flatten
from mmcl.data.records import DataError
from mmcl.data.sources.base import IMAGE_SUFFIXES, Adapter, DatasetWriter, Sources, clean, image_splits, read_json
from mmcl.metrics.qa import parse_box

GROUPS = ("instruct", "vqa", "ocr", "ref")  # the study's order (IVOR)
SHORT_ANSWER = (  # LLaVA-1.5's answer-format prompts of VQAv2, GQA, OK-VQA, OCR-VQA; A-OKVQA
    "Answer the question using a single word or phrase.",
    "Answer with the option's letter from the given choices directly.",
)
IMAGE_TOKEN = "<image>"


@dataclass
class LlavaMixConfig(DatasetConfig):
    adapter: str = "llava_mix"
    conversations: str = "llava_v1_5_mix665k.json"
    group: str = "instruct"  # instruct | vqa | ocr | ref
    test_images: int = positive(500)  # images whose conversations are held out as the test split

    def __post_init__(self):
        if self.group not in GROUPS:
            raise ConfigError(
                f"group '{self.group}' is not a task group of the mixture{closest(self.group, GROUPS)}; "
                f"choose one of: {', '.join(GROUPS)}"
            )


def group_of(entry: dict) -> str | None:
    """The task group of a conversation of the mixture (None: it belongs to none)."""
    image = entry.get("image")
    if image is None:
        return None
    if any(parse_box(turn["value"]) for turn in entry["conversations"]):
        return "ref"
    folder = image.split("/", 1)[0]
    if folder in ("ocr_vqa", "textvqa"):
        return "ocr"
    if folder == "gqa":
        return "vqa"
    if folder == "coco":
        first = entry["conversations"][0]["value"]
        return "vqa" if any(prompt in first for prompt in SHORT_ANSWER) else "instruct"
    return None


def turns(entry: dict, where: str) -> list[tuple[str, str]]:
    """A conversation's (question, reply) pairs, without the ``<image>`` placeholder."""
    messages = entry["conversations"]
    roles = [message["from"] for message in messages]
    if not roles or roles != ["human", "gpt"] * (len(roles) // 2):
        raise DataError(f"{where}: expected turns alternating human, gpt; got {', '.join(roles) or 'none'}")
    texts = [clean(message["value"].replace(IMAGE_TOKEN, " ")) for message in messages]
    return list(zip(texts[::2], texts[1::2], strict=True))


@SOURCES.register("llava_mix", LlavaMixConfig)
class LlavaMix(Adapter):
    family, modality = "qa", "image"
    config: LlavaMixConfig

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        path = sources.file(self.config.conversations)
        entries = [(i, entry) for i, entry in enumerate(read_json(path)) if group_of(entry) == self.config.group]
        split_of = image_splits([entry for _, entry in entries], self.config.test_images)
        images = sources.media(IMAGE_SUFFIXES)
        for index, entry in entries:
            split = split_of(entry)
            conversation = turns(entry, f"{path.name}, conversation {index} (id {entry.get('id')})")
            media = images.get(Path(entry["image"]).name)
            for reply in range(1, len(conversation) + 1):
                instruction, answer = flatten(conversation[:reply])
                writer.add(split, f"{index}-{reply}", instruction, [answer], media, entry["image"])
