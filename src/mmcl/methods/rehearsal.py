"""Rehearsal: naive fine-tuning with a replay buffer of the earlier tasks' training data.

Replay is a setting every method has (``replay_fraction``, read by the training job: see
``mmcl.data.replay``), so any method can rehearse, e.g. mSGM + Rehearsal (``soft_targets`` with
``base: lora``). This type is ``finetune`` with replay on by default, at the study's main setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmcl.config.ranges import FRACTION, ranged
from mmcl.methods import METHODS
from mmcl.methods.finetune import Finetune, FinetuneConfig


@dataclass
class RehearsalConfig(FinetuneConfig):
    replay_fraction: float = ranged(0.01, FRACTION)  # 1% of each earlier task, as in the study's "Rehearsal (1%)"


@METHODS.register("rehearsal", RehearsalConfig)
class Rehearsal(Finetune):
    config: RehearsalConfig
