"""Decoding media files: images with Pillow, audio with soundfile (resampled with soxr), video frames
with Pillow (animated GIF/WebP, as the embedded benchmark writes clips) or PyAV (MP4, AVI, WebM, ...).

The encoders' inputs (``MediaProcessor.load``) and the conversion of real datasets (which skips, and
counts, media that fail here) use the same readers, so a file that converts is a file that loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmcl.data.records import MEDIA_FIX, DataError

if TYPE_CHECKING:
    import torch

ANIMATED = (".gif", ".webp")  # clips stored as animated images; any other clip is decoded by FFmpeg (PyAV)


class MediaError(DataError):
    """A media file that cannot be decoded; ``reason`` says why, the message also how to fix it."""

    def __init__(self, path: Path, what: str, reason: str):
        self.reason = f"not a readable {what} ({reason})"
        super().__init__(f"{path}: {self.reason}; {MEDIA_FIX}")


def read_image(path: Path):
    """The image as an RGB PIL image."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise MediaError(path, "image", str(err)) from None


def read_audio(path: Path, rate: int | None = None) -> np.ndarray:
    """Mono float32 waveform at ``rate`` Hz (None: the file's own rate)."""
    import soundfile

    try:
        wave, native = soundfile.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as err:  # libsndfile's errors are RuntimeErrors
        raise MediaError(path, "audio file", str(err)) from None
    if not len(wave):
        raise MediaError(path, "audio file", "no samples")
    mono = wave.mean(1)
    if rate is None or rate == native:
        return mono
    import soxr

    return soxr.resample(mono, native, rate).astype(np.float32)


def audio_seconds(path: Path) -> float:
    """A clip's duration from its header, without decoding it."""
    import soundfile

    try:
        return soundfile.info(str(path)).duration
    except (OSError, RuntimeError) as err:
        raise MediaError(path, "audio file", str(err)) from None


def window_positions(full: int, share: float | None) -> int:
    """Encoder positions that hold a file's content: ``full`` for an input that fills its window (``share``
    None), else the ``share`` of them it fills, rounded up (a Whisper position is 20 ms of the 30 s window)."""
    return full if share is None else max(1, math.ceil(round(full * share, 6)))


def read_frames(path: Path, count: int) -> list:
    """``count`` RGB frames sampled uniformly from the first to the last frame of a clip."""
    try:
        if Path(path).suffix.lower() in ANIMATED:
            return _animated_frames(path, count)
        return _decoded_frames(path, count)
    except (OSError, SyntaxError, ValueError, IndexError) as err:
        raise MediaError(path, "video clip", str(err) or type(err).__name__) from None


def problem(modality: str, path: Path) -> str | None:
    """Why ``path`` cannot be used as ``modality`` media, or None when it decodes."""
    readers = {"image": read_image, "audio": read_audio, "video": lambda clip: read_frames(clip, 1)}
    try:
        readers[modality](path)
    except MediaError as err:
        return err.reason
    return None


def _uniform(total: int, count: int) -> list[int]:
    return np.linspace(0, total - 1, count).round().astype(int).tolist()


def _animated_frames(path: Path, count: int) -> list:
    from PIL import Image, ImageSequence

    with Image.open(path) as clip:
        frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(clip)]
    return [frames[i] for i in _uniform(len(frames), count)]


def _decoded_frames(path: Path, count: int) -> list:
    """Frames of a clip FFmpeg decodes, keeping only the sampled ones (a clip can hold thousands)."""
    import av

    try:
        with av.open(str(path)) as container:
            total = container.streams.video[0].frames  # from the header; 0 when the container does not say
        if not total:
            with av.open(str(path)) as container:
                total = sum(1 for packet in container.demux(video=0) if packet.size)
        picks, frames = _uniform(total, count), []
        with av.open(str(path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                while len(frames) < count and picks[len(frames)] == index:
                    frames.append(frame.to_image())
                if len(frames) == count:
                    break
    except av.error.FFmpegError as err:
        raise ValueError(str(err)) from None
    if not frames:
        raise ValueError("no video frames")
    # A clip with fewer frames than its header announced: its last frame stands for the missing ones.
    return frames + frames[-1:] * (count - len(frames))


@dataclass
class MediaProcessor:
    """Turns media files into encoder inputs, with the processors saved beside each encoder."""

    image_processor: object | None
    feature_extractor: object | None
    video_frames: int

    def load(self, modality: str, path: Path) -> torch.Tensor:
        """Encoder input of one media file; a file that cannot be decoded raises DataError naming it."""
        if modality == "image":
            return self.image_processor([read_image(path)], return_tensors="pt")["pixel_values"][0]
        if modality == "video":
            return self.image_processor(read_frames(path, self.video_frames), return_tensors="pt")["pixel_values"]
        if modality == "audio":
            rate = self.feature_extractor.sampling_rate  # real recordings come at 44.1 or 48 kHz: resampled
            features = self.feature_extractor(read_audio(path, rate), sampling_rate=rate, return_tensors="pt")
            return next(iter(features.values()))[0]  # input_features (log-mel) or input_values (waveform)
        raise ValueError(f"no encoder input for modality '{modality}'")

    def window_share(self, modality: str, path: Path) -> float | None:
        """The share of its encoder's fixed input window a file fills, for audio that the feature extractor
        pads to a window (Whisper: 30 s); None for inputs that fill it whatever the file (images, frames).
        Only that share of the encoder's outputs reaches the LLM (``window_positions``)."""
        window = getattr(self.feature_extractor, "chunk_length", None) if modality == "audio" else None
        return min(1.0, audio_seconds(path) / window) if window else None
