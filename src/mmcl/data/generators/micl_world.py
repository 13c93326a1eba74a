"""The world of the embedded benchmarks (micl-synth, llava-synth, mode-synth): what exists, how it looks and sounds.

Four kinds of world state, each drawn from a numpy ``Generator`` and encoded to real media bytes:

- a **scene** (PNG): 1..``max_objects`` objects on a plain dark background, each in its own cell
  of a 3x3 grid (top/middle/bottom x left/center/right), with a colour and a shape. Objects of one
  scene have distinct colours and distinct shapes, so "the circle" or "the red object" always names
  exactly one of them;
- **sounds** (16-bit WAV): 1..4 short events of one kind (tone = sine, buzz = band-limited square,
  noise = band noise with a flat spectrum), each with its own pitch (low/mid/high = 300/700/1500
  Hz), one event per equal time slot with gaps of at least 50 ms, over a faint noise floor;
- a **motion** (animated GIF): one object (colour, shape) travelling left/right/up/down along a
  lane (a grid row for horizontal motion, a grid column for vertical motion);
- a **sign** (PNG): one short word written in a palette colour with Pillow's built-in bitmap font
  (exact pixels on every Pillow version) at twice its size, 12x22 px per character, anywhere it fits.

Objects fill most of a grid cell (9 px at 32 px): smaller shapes are not told apart reliably.
Background shade, placement in the cell, loudness and pitch jitter are random, but every attribute
the text names is recoverable from the media: colours are exact palette values, objects never
leave their grid cell, a clip's frames always differ, and events never touch.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import soundfile
from PIL import Image, ImageDraw, ImageFont

from mmcl.config.schema import WorldConfig
from mmcl.core.registry import ConfigError

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 100, 255),
    "yellow": (240, 220, 30),
    "purple": (170, 60, 230),
    "white": (245, 245, 245),
}
COLOR_NAMES = tuple(COLORS)
SHAPES = ("circle", "square", "triangle", "cross")
OBJECT_OF_CELL = 0.8  # object side as a fraction of a grid cell's side
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")
GRID = 3

SOUND_KINDS = ("tone", "buzz", "noise")
PITCHES = {"low": 300.0, "mid": 700.0, "high": 1500.0}
MAX_SOUNDS = 4
EVENT_SHARE = 0.1  # each event lasts this share of the clip (100 ms of 1 s)
MARGIN_SHARE = 0.025  # keeps at least twice this (50 ms) between events, so they never merge
NOISE_BAND = 1.4  # band noise spans pitch / 1.4 .. pitch * 1.4: the three bands do not overlap
NOISE_FLOOR = 0.003
RAMP_SECONDS = 0.008  # fade in/out, so onsets do not click

DIRECTIONS = ("left", "right", "up", "down")
FRAME_MS = 250

# Three-letter words that share letters with each other (cat/car/cap, pen/pin/pig, ...): reading
# one takes its letters, not only its outline.
SIGN_SCALE = 2  # glyphs at 6x11 px are narrower than the tiny encoder's 8 px patches (measured: hardly read)
SIGN_WORDS = (
    *("bag", "bat", "bed", "box", "bus", "cap", "car", "cat", "cup", "dog"),
    *("fan", "hat", "jam", "key", "map", "mop", "pen", "pig", "pin", "sun"),
)

T = TypeVar("T")


@dataclass(frozen=True)
class SceneObject:
    color: str
    shape: str
    row: int
    column: int

    @property
    def place(self) -> str:
        return f"{ROWS[self.row]} {COLUMNS[self.column]}"


Scene = tuple[SceneObject, ...]


@dataclass(frozen=True)
class Sign:
    word: str
    color: str


@dataclass(frozen=True)
class Sounds:
    kind: str
    pitches: tuple[str, ...]


@dataclass(frozen=True)
class Motion:
    color: str
    shape: str
    direction: str
    lane: int  # grid row for left/right motion, grid column for up/down motion

    @property
    def horizontal(self) -> bool:
        return self.direction in ("left", "right")

    @property
    def lane_name(self) -> str:
        return (ROWS if self.horizontal else COLUMNS)[self.lane]


def pick(rng: np.random.Generator, choices: Sequence[T]) -> T:
    """One element of a sequence (a plain Python value, unlike ``rng.choice`` on strings)."""
    return choices[int(rng.integers(len(choices)))]


def check_world(world: WorldConfig, generator: str = "micl_synth") -> None:
    """Raise ConfigError for world settings the renderers cannot honour."""
    problems = []
    if not 1 <= world.max_objects <= len(SHAPES):
        problems.append(f"max_objects must be 1..{len(SHAPES)} (objects of a scene have distinct shapes)")
    if world.image_size < 24:
        problems.append("image_size must be at least 24 (shapes need 6+ pixels to be told apart)")
    elif world.image_size - object_pixels(world.image_size) < world.video_frames - 1:
        problems.append("image_size is too small to move a shape by a pixel per video frame")
    if world.video_frames < 2:
        problems.append("video_frames must be at least 2 (motion needs two frames)")
    if world.sample_rate < 8000:
        problems.append("sample_rate must be at least 8000 Hz (high noise bursts reach 2.1 kHz)")
    if world.audio_seconds < 0.5:
        problems.append("audio_seconds must be at least 0.5 (four events with gaps)")
    if problems:
        raise ConfigError(f"{generator} world: " + "; ".join(problems))


def sample_scene(rng: np.random.Generator, world: WorldConfig, count: int | None = None) -> Scene:
    """A scene of ``count`` objects (None: 1..``world.max_objects``, uniformly)."""
    if count is None:
        count = int(rng.integers(1, world.max_objects + 1))
    colors = rng.choice(len(COLOR_NAMES), count, replace=False)
    shapes = rng.choice(len(SHAPES), count, replace=False)
    cells = rng.choice(GRID * GRID, count, replace=False)
    objects = [
        SceneObject(COLOR_NAMES[c], SHAPES[s], int(cell) // GRID, int(cell) % GRID)
        for c, s, cell in zip(colors, shapes, cells, strict=True)
    ]
    # Reading order, so that captions list objects as a deterministic function of the pixels.
    return tuple(sorted(objects, key=lambda o: (o.row, o.column)))


def sample_sounds(rng: np.random.Generator, world: WorldConfig) -> Sounds:
    count = int(rng.integers(1, MAX_SOUNDS + 1))
    return Sounds(pick(rng, SOUND_KINDS), tuple(pick(rng, tuple(PITCHES)) for _ in range(count)))


def sample_motion(rng: np.random.Generator, world: WorldConfig) -> Motion:
    return Motion(
        pick(rng, COLOR_NAMES),
        pick(rng, SHAPES),
        pick(rng, DIRECTIONS),
        int(rng.integers(GRID)),
    )


def sample_sign(rng: np.random.Generator, world: WorldConfig) -> Sign:
    return Sign(pick(rng, SIGN_WORDS), pick(rng, COLOR_NAMES))


def sign_font() -> ImageFont.ImageFont:
    return ImageFont.load_default_imagefont()


def object_pixels(image_size: int) -> int:
    return round(OBJECT_OF_CELL * image_size / GRID)


def cell_span(index: int, image_size: int) -> tuple[int, int]:
    """First pixel and one past the last pixel of grid row/column ``index``."""
    return round(index * image_size / GRID), round((index + 1) * image_size / GRID)


def _place_in_cell(index: int, side: int, image_size: int, rng: np.random.Generator) -> int:
    low, high = cell_span(index, image_size)
    return low + int(rng.integers(high - low - side + 1))


def _background(rng: np.random.Generator) -> tuple[int, int, int]:
    """A dark blue-grey whose shade varies, so no single pixel value means "empty"."""
    level = int(rng.integers(8, 33))
    return level, level, level + 8


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: int, y: int, side: int, fill) -> None:
    right, bottom = x + side - 1, y + side - 1
    if shape == "circle":
        draw.ellipse((x, y, right, bottom), fill=fill)
    elif shape == "square":
        draw.rectangle((x, y, right, bottom), fill=fill)
    elif shape == "triangle":
        draw.polygon([(x + (side - 1) / 2, y), (right, bottom), (x, bottom)], fill=fill)
    else:  # cross: a plus sign of two bars, as wide as the side allows while centred
        bar = side // 3 + (side - side // 3) % 2
        offset = (side - bar) // 2
        draw.rectangle((x + offset, y, x + offset + bar - 1, bottom), fill=fill)
        draw.rectangle((x, y + offset, right, y + offset + bar - 1), fill=fill)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def render_scene(scene: Scene, world: WorldConfig, rng: np.random.Generator) -> Image.Image:
    size = world.image_size
    image = Image.new("RGB", (size, size), _background(rng))
    draw = ImageDraw.Draw(image)
    side = object_pixels(size)
    for obj in scene:
        x = _place_in_cell(obj.column, side, size, rng)
        y = _place_in_cell(obj.row, side, size, rng)
        _draw_shape(draw, obj.shape, x, y, side, COLORS[obj.color])
    return image


def encode_scene(scene: Scene, world: WorldConfig, rng: np.random.Generator) -> bytes:
    return png(render_scene(scene, world, rng))


def sign_mask(word: str) -> Image.Image:
    """The word's glyphs as a mode-L mask (255: ink), enlarged SIGN_SCALE times without smoothing."""
    font = sign_font()
    _, _, width, height = font.getbbox(word)
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).text((0, 0), word, fill=255, font=font)
    return mask.resize((width * SIGN_SCALE, height * SIGN_SCALE), Image.Resampling.NEAREST)


def encode_sign(sign: Sign, world: WorldConfig, rng: np.random.Generator) -> bytes:
    size, mask = world.image_size, sign_mask(sign.word)
    image = Image.new("RGB", (size, size), _background(rng))
    x, y = int(rng.integers(size - mask.width + 1)), int(rng.integers(size - mask.height + 1))
    image.paste(COLORS[sign.color], (x, y), mask)
    return png(image)


def _event_wave(kind: str, pitch: float, length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(length) / sample_rate
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "tone":
        wave = np.sin(2 * np.pi * pitch * t + phase)
    elif kind == "buzz":  # odd harmonics at 1/k: a square wave, cut below Nyquist to avoid aliasing
        harmonics = np.arange(1, int(0.45 * sample_rate / pitch) + 1, 2)
        wave = (np.sin(2 * np.pi * pitch * np.outer(harmonics, t) + phase) / harmonics[:, None]).sum(0)
    else:  # band noise: flat magnitude with random phases, so no component ever stands out as a tone
        frequencies = np.fft.rfftfreq(length, 1 / sample_rate)
        in_band = np.abs(np.log(np.maximum(frequencies, 1.0) / pitch)) <= np.log(NOISE_BAND)
        wave = np.fft.irfft(in_band * np.exp(2j * np.pi * rng.random(len(frequencies))), length)
    ramp = max(1, round(RAMP_SECONDS * sample_rate))
    envelope = np.minimum(1.0, np.minimum(np.arange(length), np.arange(length)[::-1]) / ramp)
    wave = wave * envelope
    # Equal loudness (RMS) across kinds and pitches, with a little variation between events.
    return wave * rng.uniform(0.12, 0.22) / np.sqrt(np.mean(wave**2))


def encode_sounds(sounds: Sounds, world: WorldConfig, rng: np.random.Generator) -> bytes:
    rate = world.sample_rate
    total = round(rate * world.audio_seconds)
    wave = rng.normal(0.0, NOISE_FLOOR, total)
    length, margin = round(EVENT_SHARE * total), round(MARGIN_SHARE * total)
    slot = total // len(sounds.pitches)
    for i, name in enumerate(sounds.pitches):
        start = i * slot + margin + int(rng.integers(slot - length - 2 * margin + 1))
        pitch = PITCHES[name] * rng.uniform(0.97, 1.03)
        wave[start : start + length] += _event_wave(sounds.kind, pitch, length, rate, rng)
    pcm = np.round(np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    soundfile.write(buffer, pcm, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def encode_motion(motion: Motion, world: WorldConfig, rng: np.random.Generator) -> bytes:
    size, frames = world.image_size, world.video_frames
    side = object_pixels(size)
    across = _place_in_cell(motion.lane, side, size, rng)
    free = size - side
    # Edge to edge: the object crosses all three cells of its lane, so a per-frame "which cell"
    # already tells the direction (shorter travel left direction near chance for the tiny backbone).
    along = [round(free * k / (frames - 1)) for k in range(frames)]
    if motion.direction in ("left", "up"):
        along.reverse()
    # A fixed palette (background, then the colours) keeps the named colours exact in the GIF.
    palette = [channel for rgb in (_background(rng), *COLORS.values()) for channel in rgb]
    fill = 1 + COLOR_NAMES.index(motion.color)
    images = []
    for position in along:
        image = Image.new("P", (size, size), 0)
        image.putpalette(palette)
        x, y = (position, across) if motion.horizontal else (across, position)
        _draw_shape(ImageDraw.Draw(image), motion.shape, x, y, side, fill)
        images.append(image)
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=FRAME_MS,
        loop=0,
        optimize=False,
    )
    return buffer.getvalue()
