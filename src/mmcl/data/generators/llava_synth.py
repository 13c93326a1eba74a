"""llava-synth: the embedded benchmark of the continual-LLaVA study, drawn from the micl-synth world.

Srivastava et al. continue a LLaVA model through four VL task groups (Instruct -> VQA -> OCR -> Ref)
and measure what its LLM loses in language understanding (NLU) and generation (NLG). This suite
has one task per group, on ``micl_world`` scenes and signs, and two text-only tasks that stand for
the base LLM's own knowledge (the tiny backbone's stage 0 trains on both; ``text_task``):

- ``caption`` (captioning): the scene described in the world's words ("describe the image ." -> "a red
  circle at the top left and a blue square at the bottom right", ``world.references_per_caption``
  paraphrases), the data of the LLaVA-1.5 alignment stage (``suites.<suite>.alignment``);
- ``instruct``: a two- or three-turn conversation about a scene, flattened into the instruction;
  the answer is the last turn's reply. A turn either names an object or says "it" for the object
  of the turn before, and never asks what the conversation already said about it:
  "user : what color is the circle ? assistant : it is red user : where is it ?" -> "it is at the top left";
- ``vqa``: "what color is the circle ?" -> "red" (also shape, and count when scenes hold several objects);
- ``ocr``: a sign, "what word is written in the image ?" -> "cat";
- ``ref``: a referring expression answered with the grid cell, "where is the red circle ?" -> "top left";
- ``text_nlu`` (multiple choice, scored by likelihood like lm-evaluation-harness): a described
  scene, sound or clip and a question with up to four options, e.g. "scene : a red circle at the top
  left . question : what is at the bottom right ?" with options "red circle", "nothing", ...;
- ``text_nlg`` (last-word completion, LAMBADA-style): a description and a sentence whose last word
  only the description gives away, "a red circle at the top left . the red circle is at the top" -> "left".

Every task here is (captioning or qa, image) or text-only, so the generator knows its tasks by name (``TASKS``).
Seeded streams, files and perception sets: ``synthetic.SyntheticSuite``; the image encoder's
perception set holds scenes and signs, half each on average.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mmcl.config.schema import SuiteConfig, TaskConfig, WorldConfig
from mmcl.data import GENERATORS
from mmcl.data.generators.micl_synth import (
    MEDIA,
    NUMBER_WORDS,
    TEXT_SOURCES,
    check_references,
    described,
    refer_to,
    scene_tags,
)
from mmcl.data.generators.micl_world import (
    COLOR_NAMES,
    COLUMNS,
    DIRECTIONS,
    PITCHES,
    ROWS,
    SHAPES,
    SOUND_KINDS,
    Motion,
    Scene,
    SceneObject,
    Sign,
    Sounds,
    check_world,
    encode_scene,
    encode_sign,
    pick,
    sample_scene,
    sample_sign,
)
from mmcl.data.generators.synthetic import Drawn, SyntheticSuite, Tagged, check_tasks

TASKS = {  # the tasks this generator writes: name -> (family, modality)
    "caption": ("captioning", "image"),
    "instruct": ("qa", "image"),
    "vqa": ("qa", "image"),
    "ocr": ("qa", "image"),
    "ref": ("qa", "image"),
    "text_nlu": ("multiple_choice", "text"),
    "text_nlg": ("last_word", "text"),
}
ATTRIBUTES = ("color", "shape", "place")  # what a conversation asks about an object
PLACES = tuple(f"{row} {column}" for row in ROWS for column in COLUMNS)
OPTIONS = 4  # options of a multiple-choice question (fewer when fewer answers exist, e.g. sound kinds)
NOTHING = "nothing"  # what is at an empty cell


# --- instruct: conversations -------------------------------------------------------------------


def _naming(obj: SceneObject, by: str) -> str:
    """A phrase that picks ``obj`` out of its scene by one attribute (a scene's objects differ in each)."""
    if by == "color":
        return f"the {obj.color} object"
    if by == "shape":
        return f"the {obj.shape}"
    return f"the object at the {obj.place}"


def _turn(subject: str, attribute: str, obj: SceneObject) -> tuple[str, str]:
    """A question about ``attribute`` of ``subject`` and the assistant's reply."""
    if attribute == "color":
        return f"what color is {subject} ?", f"it is {obj.color}"
    if attribute == "shape":
        return f"what shape is {subject} ?", f"it is a {obj.shape}"
    return f"where is {subject} ?", f"it is at the {obj.place}"


def conversation(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """Two or three turns (fewer when nothing is left to ask); returns (flattened instruction, last reply)."""
    told: dict[SceneObject, set[str]] = {obj: set() for obj in scene}  # what the conversation said of each
    focus: SceneObject | None = None
    turns: list[tuple[str, str]] = []
    for _ in range(int(rng.integers(2, 4))):
        open_objects = [obj for obj in scene if len(told[obj]) < len(ATTRIBUTES)]
        if not open_objects:
            break
        # Stay on the object of the previous turn ("it") half of the time, when something is left to ask.
        if focus not in open_objects or (len(open_objects) > 1 and rng.random() < 0.5):
            focus = pick(rng, [obj for obj in open_objects if obj != focus] or open_objects)
            asked = pick(rng, [a for a in ATTRIBUTES if a not in told[focus]])
            by = pick(rng, [a for a in ATTRIBUTES if a != asked])
            subject = _naming(focus, by)
            told[focus].add(by)
        else:
            asked = pick(rng, [a for a in ATTRIBUTES if a not in told[focus]])
            subject = "it"
        told[focus].add(asked)
        turns.append(_turn(subject, asked, focus))
    return flatten(turns)


def flatten(turns: list[tuple[str, str]]) -> tuple[str, str]:
    """A conversation of (question, reply) turns as one sample: (the earlier turns and the last question,
    the last reply). Real conversations (LLaVA's instruction mixture, ``sources.llava_mix``) use it too."""
    *before, (question, reply) = turns
    history = "".join(f"user : {q} assistant : {r} " for q, r in before)
    return f"{history}user : {question}", reply


# --- vqa, ocr, ref ----------------------------------------------------------------------------


def visual_question(scene: Scene, world: WorldConfig, rng: np.random.Generator) -> tuple[str, str]:
    kind = pick(rng, ("color", "shape") + (("count",) if world.max_objects > 1 else ()))
    target = pick(rng, scene)
    if kind == "color":
        return f"what color is the {target.shape} ?", target.color
    if kind == "shape":
        return f"what shape is the {target.color} object ?", target.shape
    return "how many shapes are there ?", NUMBER_WORDS[len(scene)]


def sign_question(sign: Sign, rng: np.random.Generator) -> tuple[str, str]:
    question = pick(rng, ("what word is written in the image ?", "what does the sign say ?", "read the word ."))
    return question, sign.word


def referring_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    target = pick(rng, scene)
    template = pick(rng, ("where is {} ?", "find {} .", "point to {} ."))
    return template.format(refer_to(target, rng)), target.place


# --- text_nlu: multiple choice about a described state -----------------------------------------


def _options(gold: str, candidates: list[str], rng: np.random.Generator) -> list[str]:
    """The gold and up to OPTIONS - 1 distractors, taken from ``candidates`` in their order, shuffled."""
    distractors = [c for c in dict.fromkeys(candidates) if c != gold][: OPTIONS - 1]
    options = [gold, *distractors]
    return [options[i] for i in rng.permutation(len(options))]


def _shuffled(values, rng: np.random.Generator) -> list[str]:
    return [values[i] for i in rng.permutation(len(values))]


def scene_choice(scene: Scene, rng: np.random.Generator) -> tuple[str, str, list[str]]:
    """(question, gold, distractor candidates) about a scene; candidates the description also names come first."""
    kind = pick(rng, ("color", "shape", "place", "content"))
    target = pick(rng, scene)
    if kind == "color":
        return f"what color is the {target.shape} ?", target.color, _shuffled(COLOR_NAMES, rng)
    if kind == "shape":
        return f"what shape is the {target.color} object ?", target.shape, _shuffled(SHAPES, rng)
    others = [obj for obj in scene if obj != target]
    if kind == "place":
        places = [obj.place for obj in others] + _shuffled(PLACES, rng)
        return f"where is the {target.color} {target.shape} ?", target.place, places
    # content: an occupied or an empty cell, half each (when the scene leaves one empty)
    empty = [p for p in PLACES if p not in {obj.place for obj in scene}]
    place = pick(rng, empty) if empty and rng.random() < 0.5 else target.place
    things = {obj.place: f"{obj.color} {obj.shape}" for obj in scene}
    gold = things.get(place, NOTHING)
    decoys = [f"{color} {shape}" for color in COLOR_NAMES for shape in SHAPES]
    return f"what is at the {place} ?", gold, [*things.values(), NOTHING, *_shuffled(decoys, rng)]


def sounds_choice(sounds: Sounds, rng: np.random.Generator) -> tuple[str, str, list[str]]:
    kind = pick(rng, ("count", "kind", "first", "last"))
    if kind == "count":
        return "how many sounds are there ?", NUMBER_WORDS[len(sounds.pitches)], list(NUMBER_WORDS[1:5])
    if kind == "kind":
        return "what kind of sound do you hear ?", sounds.kind, list(SOUND_KINDS)
    pitch = sounds.pitches[0 if kind == "first" else -1]
    return f"what is the pitch of the {kind} sound ?", pitch, list(PITCHES)


def motion_choice(motion: Motion, rng: np.random.Generator) -> tuple[str, str, list[str]]:
    kind = pick(rng, ("direction", "color", "shape"))
    if kind == "direction":
        return f"which way does {refer_to(motion, rng)} move ?", motion.direction, list(DIRECTIONS)
    if kind == "color":
        return f"what color is the moving {motion.shape} ?", motion.color, _shuffled(COLOR_NAMES, rng)
    return "what shape is moving ?", motion.shape, list(SHAPES)


CHOICES: dict[str, Callable] = {"image": scene_choice, "audio": sounds_choice, "video": motion_choice}


def nlu_question(world: WorldConfig, rng: np.random.Generator) -> tuple[str, str, list[str]]:
    """(instruction, gold option, options)."""
    source = pick(rng, TEXT_SOURCES)
    kind = MEDIA[source]
    state = kind.sample(rng, world)
    description = pick(rng, kind.captions(state))
    question, gold, candidates = CHOICES[source](state, rng)
    return f"{kind.label} : {description} . question : {question}", gold, _options(gold, candidates, rng)


# --- text_nlg: the last word of a sentence about a described state ------------------------------


def scene_completion(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    target = pick(rng, scene)
    kind = pick(rng, ("color", "shape", "column"))
    if kind == "color":
        return f"the {target.shape} is", target.color
    if kind == "shape":
        return f"the {target.color} object is a", target.shape
    return f"the {target.color} {target.shape} is at the {ROWS[target.row]}", COLUMNS[target.column]


def sounds_completion(sounds: Sounds, rng: np.random.Generator) -> tuple[str, str]:
    kind = pick(rng, ("first", "last", "kind"))
    if kind == "kind":
        return "every sound is a", sounds.kind
    return f"the {kind} sound is", sounds.pitches[0 if kind == "first" else -1]


def motion_completion(motion: Motion, rng: np.random.Generator) -> tuple[str, str]:
    kind = pick(rng, ("direction", "color", "shape"))
    if kind == "direction":
        return f"the {motion.shape} keeps moving", motion.direction
    if kind == "color":
        return f"the moving {motion.shape} is", motion.color
    return f"the {motion.color} object is a", motion.shape


COMPLETIONS: dict[str, Callable] = {"image": scene_completion, "audio": sounds_completion, "video": motion_completion}


def nlg_passage(world: WorldConfig, rng: np.random.Generator) -> tuple[str, str]:
    """(passage without its last word, the last word)."""
    source = pick(rng, TEXT_SOURCES)
    kind = MEDIA[source]
    state = kind.sample(rng, world)
    description = pick(rng, kind.captions(state))
    sentence, word = COMPLETIONS[source](state, rng)
    return f"{description} . {sentence}", word


def sign_tags(sign: Sign) -> list[str]:
    """The word, its colour, and each letter it has: letters shared between words give the encoder
    something to learn beyond 20 separate outlines (no two sign words have the same letters)."""
    return [f"word:{sign.word}", f"ink:{sign.color}", *(f"letter:{letter}" for letter in sorted(set(sign.word)))]


def read_sign(suite: SyntheticSuite, rng: np.random.Generator, avoid: set[bytes]) -> Drawn:
    """A sign, and a question asking for its word."""
    sign, data = suite.redraw(sample_sign, encode_sign, rng, avoid)
    question, answer = sign_question(sign, rng)
    return Drawn(question, [answer], data, "png")


def tagged_sign(suite: SyntheticSuite, rng: np.random.Generator, avoid: set[bytes]) -> Tagged:
    """A sign with its perception tags."""
    sign, data = suite.redraw(sample_sign, encode_sign, rng, avoid)
    return Tagged(data, "png", sign_tags(sign))


@GENERATORS.register("llava_synth")
class LlavaSynth(SyntheticSuite):
    """Writes the tasks of ``TASKS`` that the suite lists, under those names."""

    def __init__(self, suite: SuiteConfig):
        check_tasks("llava_synth", suite, TASKS)
        check_references(suite.world, "llava_synth")
        check_world(suite.world, "llava_synth")
        super().__init__(suite)

    def draw(self, task: str, config: TaskConfig, rng: np.random.Generator, avoid: set[bytes]) -> Drawn:
        world = self.suite.world
        if task == "text_nlu":
            instruction, gold, options = nlu_question(world, rng)
            return Drawn(instruction, [gold], options=options)
        if task == "text_nlg":
            passage, word = nlg_passage(world, rng)
            return Drawn(passage, [word])
        if task == "ocr":
            return read_sign(self, rng, avoid)
        scene, data = self.redraw(sample_scene, encode_scene, rng, avoid)
        if task == "caption":
            return described("image", scene, data, world)
        if task == "instruct":
            question, answer = conversation(scene, rng)
        elif task == "vqa":
            question, answer = visual_question(scene, world, rng)
        else:
            question, answer = referring_question(scene, rng)
        return Drawn(question, [answer], data, "png")

    def perception_sample(self, encoder: str, rng: np.random.Generator, avoid: set[bytes]) -> Tagged:
        if pick(rng, ("scene", "sign")) == "scene":
            scene, data = self.redraw(sample_scene, encode_scene, rng, avoid)
            return Tagged(data, "png", scene_tags(scene))
        return tagged_sign(self, rng, avoid)
