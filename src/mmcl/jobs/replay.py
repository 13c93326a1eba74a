"""``mmcl replay``: choose one stage's rehearsal buffer (sample ids of the earlier tasks; no model)."""

from __future__ import annotations

from pathlib import Path

from mmcl.config.schema import Params
from mmcl.core.integrity import seal
from mmcl.core.io import atomic_path, write_json
from mmcl.core.plan import stage_from_key
from mmcl.core.provenance import record
from mmcl.data.replay import BUFFER, choose_replay
from mmcl.methods import METHODS


def build_replay(params: Params, method: str, seed: int, stage_key: str, data_dir: Path, out_dir: Path, log=print):
    """Write the sealed buffer of one stage of ``method`` to ``out_dir``."""
    config = params.methods[method]
    stage = stage_from_key(METHODS.get(config.type).schedule, stage_key)
    earlier = [task for task in stage.seen if task not in stage.tasks]
    if not earlier:
        raise ValueError(f"stage '{stage_key}' has no earlier tasks to replay (the first stage has no buffer)")
    chosen = choose_replay(Path(data_dir), earlier, config.replay_fraction, seed, stage_key)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        write_json(tmp / BUFFER, {"stage": stage_key, "seed": seed, "fraction": config.replay_fraction, "ids": chosen})
        seal(tmp)
    sizes = ", ".join(f"{task} {len(ids)}" for task, ids in chosen.items())
    log(f"replay buffer of stage {stage_key} written to {out_dir}: {sizes}")
    job = {"command": "replay", "method": method, "seed": seed, "stage": stage_key, "data": str(data_dir)}
    record(Path(out_dir) / "provenance.json", params, job)
