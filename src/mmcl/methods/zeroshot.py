"""The stage-0 model evaluated without any continual training: the reference for forward transfer."""

from __future__ import annotations

from mmcl.methods import METHODS
from mmcl.methods.base import CLMethod


@METHODS.register("zeroshot")
class ZeroShot(CLMethod):
    schedule = "none"
