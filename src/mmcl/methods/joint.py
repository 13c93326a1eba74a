"""Joint multitask training on every task of the order at once: the usual upper-bound reference row.

It trains what ``finetune`` trains, in one stage from the base model, for as many steps as the
sequential run takes in total (``train.steps`` per task).
"""

from __future__ import annotations

from mmcl.methods import METHODS
from mmcl.methods.finetune import Finetune, FinetuneConfig


@METHODS.register("joint", FinetuneConfig)
class Joint(Finetune):
    schedule = "joint"
