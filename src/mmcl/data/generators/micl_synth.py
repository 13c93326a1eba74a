"""micl-synth: the embedded offline benchmark, procedurally generated from one small world.

The world (``micl_world``) holds scenes of coloured shapes on a 3x3 grid (images), short beeping
sounds (audio) and a shape moving across the canvas (video). This module puts it into words:

- captioning: a fixed instruction per modality ("describe the image .") and
  ``world.references_per_caption`` paraphrases, each naming every attribute of the media, e.g.
  "a red circle at the top left and a blue square at the bottom right";
- QA: one question, one single-word answer; the question kinds (and so the answer vocabularies)
  differ per modality and overlap only partly (colours and shapes, "one"/"two", "left"/"right");
- text QA: a description of a scene, audio or clip in the same words, then a question about it,
  e.g. "scene : a red circle at the top left . question : what color is the circle ?"
  (the base LLM's stage-0 knowledge of the world).

All text is lowercase with punctuation as separate tokens, so ``text.split()`` yields the words.
Seeded streams, files and perception sets: ``synthetic.SyntheticSuite``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmcl.config.schema import SuiteConfig, TaskConfig, WorldConfig
from mmcl.core.registry import ConfigError
from mmcl.data import GENERATORS
from mmcl.data.generators.micl_world import (
    COLUMNS,
    ROWS,
    Motion,
    Scene,
    SceneObject,
    Sounds,
    check_world,
    encode_motion,
    encode_scene,
    encode_sounds,
    pick,
    sample_motion,
    sample_scene,
    sample_sounds,
)
from mmcl.data.generators.synthetic import Drawn, SyntheticSuite, Tagged
from mmcl.data.records import Sample

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _plural(count: int, noun: str) -> str:
    return noun if count == 1 else noun + "s"


def refer_to(obj: SceneObject | Motion, rng: np.random.Generator) -> str:
    """A phrase naming exactly one object (objects of a scene differ in colour and in shape)."""
    return pick(rng, (f"the {obj.shape}", f"the {obj.color} {obj.shape}", f"the {obj.color} object"))


# Captions: every template names every attribute; the first ``references_per_caption`` are used.


def scene_captions(scene: Scene) -> list[str]:
    things = [(f"{o.color} {o.shape}", o.place) for o in scene]
    count = f"{NUMBER_WORDS[len(scene)]} {_plural(len(scene), 'shape')}"
    return [
        " and ".join(f"a {thing} at the {place}" for thing, place in things),
        " , ".join(f"{place} : a {thing}" for thing, place in things),
        f"{count} : " + " and ".join(f"{thing} {place}" for thing, place in things),
        " , ".join(f"{thing} in the {place}" for thing, place in things),
    ]


def sounds_captions(sounds: Sounds) -> list[str]:
    count = len(sounds.pitches)
    many = f"{NUMBER_WORDS[count]} {sounds.kind} {_plural(count, 'sound')}"
    return [
        f"{many} : " + " , ".join(sounds.pitches),
        " then ".join(sounds.pitches) + f" , {many}",
        f"i hear {many} : " + " ".join(sounds.pitches),
        " , ".join(f"a {pitch} {sounds.kind}" for pitch in sounds.pitches),
    ]


def motion_captions(motion: Motion) -> list[str]:
    thing, way, lane = f"{motion.color} {motion.shape}", motion.direction, motion.lane_name
    return [
        f"a {thing} moves {way} along the {lane}",
        f"{lane} : a {thing} moving {way}",
        f"the {thing} is moving {way} at the {lane}",
        f"there is a {thing} moving {way} along the {lane}",
    ]


CAPTION_TEMPLATES = 4


# Parsers: the first caption template back to the world state it describes. MoInCL's pseudo-target
# generation derives question-answer pairs from ground-truth captions; on this world that is exact.


def parse_scene_caption(caption: str) -> Scene:
    objects = []
    for part in caption.split(" and "):  # "a red circle at the top left"
        _, color, shape, _, _, row, column = part.split()
        objects.append(SceneObject(color, shape, ROWS.index(row), COLUMNS.index(column)))
    return tuple(objects)


def parse_sounds_caption(caption: str) -> Sounds:
    many, pitches = caption.split(" : ")  # "two buzz sounds : low , high"
    return Sounds(many.split()[1], tuple(pitches.split(" , ")))


def parse_motion_caption(caption: str) -> Motion:
    _, color, shape, _, direction, _, _, lane = caption.split()  # "a red circle moves left along the top"
    lanes = ROWS if direction in ("left", "right") else COLUMNS
    return Motion(color, shape, direction, lanes.index(lane))


# Questions: the kind is drawn uniformly, then the asked-about value is uniform by construction.


def scene_question(scene: Scene, world: WorldConfig, rng: np.random.Generator) -> tuple[str, str]:
    # "how many" only where scenes can differ in count. "is there a red circle ?" is not asked: the
    # tiny backbone stays near chance on such conjunctions even with 5x the data (measured), so they
    # would test the model's size rather than forgetting.
    kinds = ("color", "shape", "row", "column") + (("count",) if world.max_objects > 1 else ())
    kind = pick(rng, kinds)
    target = pick(rng, scene)
    ref = refer_to(target, rng)
    if kind == "color":
        return f"what color is the {target.shape} ?", target.color
    if kind == "shape":
        return f"what shape is the {target.color} object ?", target.shape
    if kind == "row":
        return f"is {ref} at the top , middle or bottom ?", ROWS[target.row]
    if kind == "column":
        return f"is {ref} at the left , center or right ?", COLUMNS[target.column]
    return "how many shapes are there ?", NUMBER_WORDS[len(scene)]


def sounds_question(sounds: Sounds, world: WorldConfig, rng: np.random.Generator) -> tuple[str, str]:
    kind = pick(rng, ("count", "kind", "pitch"))
    if kind == "count":
        return "how many sounds are there ?", NUMBER_WORDS[len(sounds.pitches)]
    if kind == "kind":
        return "what kind of sound do you hear ?", sounds.kind
    which = pick(rng, ("first", "last"))
    return f"what is the pitch of the {which} sound ?", sounds.pitches[0 if which == "first" else -1]


def motion_question(motion: Motion, world: WorldConfig, rng: np.random.Generator) -> tuple[str, str]:
    # Direction is the one thing only video shows: ask about it half of the time.
    kind = pick(rng, ("direction", "direction", "color", "shape"))
    if kind == "direction":
        return f"which way does {refer_to(motion, rng)} move ?", motion.direction
    if kind == "color":
        return f"what color is the moving {motion.shape} ?", motion.color
    return "what shape is moving ?", motion.shape


# Tags: every attribute the text can name, as labels for encoder pretraining. Scene tags bind each
# colour and shape to its cell and to each other, so that a pooled feature still says which is where.


def scene_tags(scene: Scene) -> list[str]:
    tags = [f"count:{len(scene)}"]
    for o in scene:
        cell = f"{ROWS[o.row]}-{COLUMNS[o.column]}"
        tags += [f"{cell}:{o.color}", f"{cell}:{o.shape}", f"{o.color}:{o.shape}"]
    return tags


def sounds_tags(sounds: Sounds) -> list[str]:
    pitches = sounds.pitches
    return [f"count:{len(pitches)}", f"kind:{sounds.kind}", f"last:{pitches[-1]}"] + [
        f"sound{i}:{pitch}" for i, pitch in enumerate(pitches)
    ]


# One perception set per encoder: video frames go through the image encoder.
PERCEPTION_TAGS = {"image": scene_tags, "audio": sounds_tags}


@dataclass(frozen=True)
class MediaKind:
    """How one modality's world state is drawn, encoded and put into words."""

    extension: str
    label: str  # how a text-QA instruction introduces a description of this state
    sample: Callable[[np.random.Generator, WorldConfig], Any]
    encode: Callable[[Any, WorldConfig, np.random.Generator], bytes]
    captions: Callable[[Any], list[str]]
    question: Callable[[Any, WorldConfig, np.random.Generator], tuple[str, str]]
    parse: Callable[[str], Any]  # the first caption back to the state


MEDIA = {
    "image": MediaKind("png", "scene", sample_scene, encode_scene, scene_captions, scene_question, parse_scene_caption),
    "audio": MediaKind(
        "wav", "audio", sample_sounds, encode_sounds, sounds_captions, sounds_question, parse_sounds_caption
    ),
    "video": MediaKind(
        "gif", "clip", sample_motion, encode_motion, motion_captions, motion_question, parse_motion_caption
    ),
}
TEXT_SOURCES = ("image", "image", "audio", "video")  # scenes carry the most question kinds
SUPPORTED = (*((family, m) for family in ("captioning", "qa") for m in MEDIA), ("qa", "text"))


def check_references(world: WorldConfig, generator: str) -> None:
    if not 1 <= world.references_per_caption <= CAPTION_TEMPLATES:
        raise ConfigError(
            f"{generator} world: references_per_caption must be 1..{CAPTION_TEMPLATES}, "
            f"got {world.references_per_caption}"
        )


def described(modality: str, state, data: bytes, world: WorldConfig) -> Drawn:
    """A captioning sample of ``state``: a fixed instruction and its first ``references_per_caption`` captions."""
    kind = MEDIA[modality]
    references = kind.captions(state)[: world.references_per_caption]
    return Drawn(f"describe the {modality} .", references, data, kind.extension)


@GENERATORS.register("micl_synth")
class MiclSynth(SyntheticSuite):
    """Writes every task of a suite: ``<task>/<split>.jsonl``, ``media/<task>/<split>/*``, ``vocab.txt``."""

    def __init__(self, suite: SuiteConfig):
        for task, config in suite.tasks.items():
            if (config.family, config.modality) not in SUPPORTED:
                pairs = ", ".join(f"({f}, {m})" for f, m in SUPPORTED)
                raise ConfigError(
                    f"micl_synth task '{task}': unsupported (family, modality) "
                    f"({config.family}, {config.modality}); supported: {pairs}"
                )
        check_references(suite.world, "micl_synth")
        check_world(suite.world)
        super().__init__(suite)

    def pseudo_qa(self, sample: Sample) -> tuple[str, str]:
        """A question about a captioning sample, and its answer, derived from its first reference caption
        (deterministic per sample), in the wording of the suite's QA tasks."""
        state = MEDIA[sample.modality].parse(sample.answers[0])
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(sample.id.encode()).digest()[:8], "little"))
        return MEDIA[sample.modality].question(state, self.suite.world, rng)

    def draw(self, task: str, config: TaskConfig, rng: np.random.Generator, avoid: set[bytes]) -> Drawn:
        if config.modality == "text":
            return Drawn(*self._text_qa(rng))
        world, kind = self.suite.world, MEDIA[config.modality]
        state, data = self.redraw(kind.sample, kind.encode, rng, avoid)
        if config.family == "captioning":
            return described(config.modality, state, data, world)
        question, answer = kind.question(state, world, rng)
        return Drawn(question, [answer], data, kind.extension)

    def perception_sample(self, encoder: str, rng: np.random.Generator, avoid: set[bytes]) -> Tagged:
        kind = MEDIA[encoder]
        state, data = self.redraw(kind.sample, kind.encode, rng, avoid)
        return Tagged(data, kind.extension, PERCEPTION_TAGS[encoder](state))

    def _text_qa(self, rng: np.random.Generator) -> tuple[str, list[str]]:
        kind = MEDIA[pick(rng, TEXT_SOURCES)]
        state = kind.sample(rng, self.suite.world)
        description = pick(rng, kind.captions(state))  # every paraphrase, to teach them all
        question, answer = kind.question(state, self.suite.world, rng)
        return f"{kind.label} : {description} . question : {question}", [answer]
