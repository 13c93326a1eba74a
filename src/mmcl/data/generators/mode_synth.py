"""mode-synth: the embedded benchmark of MoDE's setting, drawn from the micl-synth world.

MoDE tunes a unified model (one LLM that reads images and writes them, as discrete tokens) through
CoIN's ScienceQA -> TextVQA -> ImageNet -> GQA -> VizWiz and measures what it loses in understanding
and in image generation. This suite has one task per dataset on ``micl_world`` scenes and signs,
and the generation task that measures the loss:

- ``reason`` (ScienceQA): a question that needs a fact about shapes or colours, or a comparison of
  places, with four lettered options (the scene's objects and look-alikes absent from it), answered
  with the letter as CoIN asks: "which object in the image is round ? a . red circle b . blue cross
  c . green circle d . white triangle answer with the option's letter ." -> "a";
- ``read`` (TextVQA): llava-synth's sign, "what does the sign say ?" -> "cat";
- ``classify`` (ImageNet): one object, "what is in the image ?" -> "red circle" (24 classes);
- ``compose`` (GQA): relations between objects, "what color is the object left of the circle ?" ->
  "blue", "is the square above or below the red object ?" -> "below", "is the cross right of the
  circle ?" -> "no";
- ``unanswerable`` (VizWiz): "what color is the circle ?" -> "red", except on images where the object
  cannot be seen (a dark frame, static, or a grey patch over its cell), whose answer is
  "unanswerable"; mildly noisy images and patches over other cells are answered as usual;
- ``draw`` (image generation): "draw a red circle at the top left" -> the target image, answers
  ["red circle top left"] ("<colour> <shape> <row> <column>", what a judge of the image compares).

The generator writes ``draw`` whether or not the suite lists it (``ALWAYS``): its prompts and target
images are what a unified backbone learns image generation from, is distilled on and is judged by,
whatever the order; listing it as a task (family ``generation``) adds its evaluation and changes no byte.
Seeded streams, files and perception sets: ``synthetic.SyntheticSuite``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from mmcl.config.schema import SuiteConfig, TaskConfig, WorldConfig
from mmcl.core.registry import ConfigError
from mmcl.data import GENERATORS
from mmcl.data.generators.llava_synth import read_sign, tagged_sign
from mmcl.data.generators.micl_synth import refer_to, scene_tags
from mmcl.data.generators.micl_world import (
    COLOR_NAMES,
    GRID,
    SHAPES,
    SIGN_WORDS,
    Scene,
    SceneObject,
    cell_span,
    check_world,
    encode_scene,
    pick,
    png,
    render_scene,
    sample_scene,
    sign_mask,
)
from mmcl.data.generators.synthetic import Drawn, SyntheticSuite, Tagged, check_tasks

DRAW = "draw"
TASKS = {  # the tasks this generator writes: name -> (family, modality)
    "reason": ("qa", "image"),
    "read": ("qa", "image"),
    "classify": ("qa", "image"),
    "compose": ("qa", "image"),
    "unanswerable": ("qa", "image"),
    DRAW: ("generation", "image"),
}
ALWAYS = (DRAW,)  # written even when the suite does not list them
SEVERAL = ("reason", "compose")  # tasks about relations between objects: scenes of 2..max_objects


def _scene_of_one(rng: np.random.Generator, world: WorldConfig) -> Scene:
    return sample_scene(rng, world, count=1)


def _scene_of_several(rng: np.random.Generator, world: WorldConfig) -> Scene:
    return sample_scene(rng, world, count=int(rng.integers(2, world.max_objects + 1)))


def _thing(obj: SceneObject) -> str:
    return f"{obj.color} {obj.shape}"


# --- reason: lettered multiple choice -----------------------------------------------------------

LETTERS = ("a", "b", "c", "d")
ANSWER_PROMPT = "answer with the option's letter ."
LOOKS = {
    "circle": "is round",
    "triangle": "has three corners",
    "square": "has four corners",
    "cross": "looks like a plus",
}
COLORED_LIKE = {  # things whose colour everyone knows: the facts the questions rest on
    "red": ("a tomato", "a strawberry"),
    "green": ("grass", "a leaf"),
    "blue": ("the sky", "the sea"),
    "yellow": ("the sun", "a banana"),
    "purple": ("a grape", "a plum"),
    "white": ("snow", "milk"),
}
EXTREMES = {  # "which object is <phrase> ?": the grid coordinate whose smallest value wins
    "highest": lambda obj: obj.row,
    "lowest": lambda obj: -obj.row,
    "furthest left": lambda obj: obj.column,
    "furthest right": lambda obj: -obj.column,
}


def _extreme(scene: Scene, phrase: str) -> SceneObject | None:
    """The one object of the scene that is ``phrase`` (None on a tie)."""
    key = EXTREMES[phrase]
    best = min(key(obj) for obj in scene)
    winners = [obj for obj in scene if key(obj) == best]
    return winners[0] if len(winners) == 1 else None


def reason_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """(instruction with lettered options, the gold letter). Distractors: the scene's other objects,
    then absent objects that share the asked property, so that neither the fact nor the image alone
    tells the answer."""
    present = {_thing(obj) for obj in scene}
    absent = [f"{c} {s}" for c in COLOR_NAMES for s in SHAPES if f"{c} {s}" not in present]
    absent = [absent[i] for i in rng.permutation(len(absent))]
    ranked = {phrase: _extreme(scene, phrase) for phrase in EXTREMES}
    extremes = [phrase for phrase, obj in ranked.items() if obj is not None]
    kind = pick(rng, ("shape", "color", "place"))
    if kind == "place" and extremes:
        phrase = pick(rng, extremes)
        gold, question = ranked[phrase], f"which object is {phrase} ?"
        alike = []
    elif kind == "color":
        gold = pick(rng, scene)
        question = f"which object in the image has the color of {pick(rng, COLORED_LIKE[gold.color])} ?"
        alike = [thing for thing in absent if thing.startswith(gold.color + " ")]
    else:
        gold = pick(rng, scene)
        question = f"which object in the image {LOOKS[gold.shape]} ?"
        alike = [thing for thing in absent if thing.endswith(" " + gold.shape)]
    others = [_thing(obj) for obj in scene if obj != gold]
    distractors = list(dict.fromkeys([*others, *alike, *absent]))[: len(LETTERS) - 1]
    options = [_thing(gold), *distractors]
    options = [options[i] for i in rng.permutation(len(options))]
    listed = " ".join(f"{letter} . {option}" for letter, option in zip(LETTERS, options, strict=True))
    return f"{question} {listed} {ANSWER_PROMPT}", LETTERS[options.index(_thing(gold))]


# --- classify, compose -------------------------------------------------------------------------


def classify_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    (obj,) = scene
    return pick(rng, ("what is in the image ?", "what object is this ?", "name the object in the image .")), _thing(obj)


RELATIONS = {  # "<a> is <relation> <b>"
    "left of": lambda a, b: a.column < b.column,
    "right of": lambda a, b: a.column > b.column,
    "above": lambda a, b: a.row < b.row,
    "below": lambda a, b: a.row > b.row,
}
AXES = {  # a question that asks which of two relations holds -> those relations
    "is {} left or right of {} ?": ("left of", "right of"),
    "is {} above or below {} ?": ("above", "below"),
}


def compose_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """A question that relates two objects of the scene (it has two or more, in distinct cells, so
    some relation holds between any two)."""
    first, second = (scene[i] for i in rng.choice(len(scene), 2, replace=False))
    a, b = refer_to(first, rng), refer_to(second, rng)
    holds = [relation for relation, test in RELATIONS.items() if test(first, second)]
    kind = pick(rng, ("attribute", "attribute", "choose", "verify"))
    if kind == "attribute":
        # "the object <relation> <b>" must pick out ``first`` alone: with two objects any relation
        # that holds does, with more maybe none (then ask another kind).
        unique = [r for r in holds if [obj for obj in scene if RELATIONS[r](obj, second)] == [first]]
        if unique:
            asked = pick(rng, ("color", "shape"))
            answer = first.color if asked == "color" else first.shape
            return f"what {asked} is the object {pick(rng, unique)} {b} ?", answer
        kind = "verify"
    if kind == "choose":
        template = pick(rng, [t for t, pair in AXES.items() if set(pair) & set(holds)])
        (relation,) = set(AXES[template]) & set(holds)
        return template.format(a, b), relation.split()[0]
    yes = bool(rng.random() < 0.5)  # as many "yes" as "no" (at least one relation holds, two at most)
    relation = pick(rng, [r for r in RELATIONS if (r in holds) == yes])
    return f"is {a} {relation} {b} ?", "yes" if yes else "no"


# --- unanswerable: views the asked object may not be seen in -------------------------------------

UNANSWERABLE = "unanswerable"
DAMAGES = {  # how the camera caught the scene -> (weight, whether the asked object can be seen)
    "clean": (3, True),
    "noisy": (2, True),  # mild noise: low quality, still answerable
    "covered": (2, True),  # a grey patch over another cell
    "hidden": (1, False),  # a grey patch over the asked object's cell (objects never leave their cell)
    "dark": (1, False),  # a near-black frame: nothing of the scene is left
    "static": (1, False),  # sensor noise only: nothing of the scene is left
}
PATCH = (128, 128, 128)  # a grey no palette colour or background comes near
NOISE_SIGMA = 16  # "noisy": per channel; the nearest palette colours (blue, purple) differ by 120 in one
DARK_LEVELS = 6  # "dark": pixel values 0..5, below every background shade (8+)


@dataclass(frozen=True)
class View:
    """A scene as the camera caught it, and the object a question asks about."""

    scene: Scene
    target: SceneObject
    damage: str
    covered: int | None = None  # the grid cell (row * GRID + column) under a grey patch

    @property
    def answerable(self) -> bool:
        return DAMAGES[self.damage][1]

    @property
    def visible(self) -> Scene:
        """The objects that can be seen."""
        if self.damage in ("dark", "static"):
            return ()
        return tuple(obj for obj in self.scene if obj.row * GRID + obj.column != self.covered)


def sample_view(rng: np.random.Generator, world: WorldConfig) -> View:
    scene = sample_scene(rng, world)
    target = pick(rng, scene)
    weights = np.array([weight for weight, _ in DAMAGES.values()], dtype=float)
    damage = list(DAMAGES)[int(rng.choice(len(DAMAGES), p=weights / weights.sum()))]
    own = target.row * GRID + target.column
    if damage == "hidden":
        return View(scene, target, damage, own)
    if damage == "covered":
        return View(scene, target, damage, pick(rng, [cell for cell in range(GRID * GRID) if cell != own]))
    return View(scene, target, damage)


def encode_view(view: View, world: WorldConfig, rng: np.random.Generator) -> bytes:
    image = render_scene(view.scene, world, rng)
    shape = (world.image_size, world.image_size, 3)
    if view.damage == "noisy":
        noise = rng.normal(0.0, NOISE_SIGMA, shape)
        image = Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).round().astype(np.uint8))
    elif view.damage == "dark":
        image = Image.fromarray(rng.integers(0, DARK_LEVELS, shape, dtype=np.uint8))
    elif view.damage == "static":
        image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
    elif view.covered is not None:
        (top, bottom), (left, right) = (cell_span(i, world.image_size) for i in divmod(view.covered, GRID))
        image.paste(PATCH, (left, top, right, bottom))
    return png(image)


def unanswerable_question(view: View, rng: np.random.Generator) -> tuple[str, str]:
    target = view.target
    kind = pick(rng, ("color", "shape", "place"))
    if kind == "color":
        question, answer = f"what color is the {target.shape} ?", target.color
    elif kind == "shape":
        question, answer = f"what shape is the {target.color} object ?", target.shape
    else:
        question, answer = f"where is {refer_to(target, rng)} ?", target.place
    return question, answer if view.answerable else UNANSWERABLE


def view_tags(view: View) -> list[str]:
    """What the encoder can learn to see in a view: the visible objects, the damage, the patch."""
    covered = [] if view.covered is None else [f"covered:{view.covered}"]
    return [f"view:{view.damage}", *covered, *scene_tags(view.visible)]


# --- draw: prompts and target images ------------------------------------------------------------

PROMPTS = ("draw a {} at the {}", "paint a {} in the {}", "an image of a {} at the {}")


def draw_prompt(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """(prompt, the canonical "<colour> <shape> <row> <column>" the image shows)."""
    (obj,) = scene
    return pick(rng, PROMPTS).format(_thing(obj), obj.place), f"{_thing(obj)} {obj.place}"


# The tasks about a clean scene: how each puts it into words.
ABOUT_SCENES = {
    "reason": reason_question,
    "classify": classify_question,
    "compose": compose_question,
    DRAW: draw_prompt,
}


@GENERATORS.register("mode_synth")
class ModeSynth(SyntheticSuite):
    """Writes the tasks of ``TASKS`` that the suite lists, and those of ``ALWAYS`` in any case."""

    def __init__(self, suite: SuiteConfig):
        check_tasks("mode_synth", suite, TASKS)
        world = suite.world
        check_world(world, "mode_synth")
        if world.max_objects < 2 and (several := [t for t in SEVERAL if t in suite.tasks]):
            raise ConfigError(f"mode_synth world: max_objects must be at least 2 for {', '.join(several)} (relations)")
        widest = max(sign_mask(word).width for word in SIGN_WORDS)
        if "read" in suite.tasks and world.image_size < widest:
            raise ConfigError(f"mode_synth world: image_size must be at least {widest} for read (its signs' width)")
        always = {task: TaskConfig(*TASKS[task]) for task in ALWAYS if task not in suite.tasks}
        super().__init__(replace(suite, tasks={**suite.tasks, **always}))

    def draw(self, task: str, config: TaskConfig, rng: np.random.Generator, avoid: set[bytes]) -> Drawn:
        if task == "read":
            return read_sign(self, rng, avoid)
        if task == "unanswerable":
            view, data = self.redraw(sample_view, encode_view, rng, avoid)
            question, answer = unanswerable_question(view, rng)
            return Drawn(question, [answer], data, "png")
        sample = _scene_of_several if task in SEVERAL else _scene_of_one
        scene, data = self.redraw(sample, encode_scene, rng, avoid)
        instruction, answer = ABOUT_SCENES[task](scene, rng)
        return Drawn(instruction, [answer], data, "png")

    def perception_sample(self, encoder: str, rng: np.random.Generator, avoid: set[bytes]) -> Tagged:
        """Signs and views (clean, damaged) half each: the encoder learns to see patches and static too."""
        if pick(rng, ("sign", "view")) == "sign":
            return tagged_sign(self, rng, avoid)
        view, data = self.redraw(sample_view, encode_view, rng, avoid)
        return Tagged(data, "png", view_tags(view))
