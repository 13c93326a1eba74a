"""Text-only instruction pools for distillation (MoInCL's IKD) from Natural-Instructions task files.

A Natural-Instructions task file is JSON with a ``Definition`` (list of strings) and ``Instances``
(each with an ``input`` and a list of ``output``). Every instance becomes a text-only sample whose
instruction is the task definition followed by the input, and whose answer is the first output.
``path`` may be one task file or a directory of them (read in name order, so the pool is stable).
"""

from __future__ import annotations

import json
from pathlib import Path

from mmcl.data.records import DataError, Sample

INSTRUCTIONS_TASK = "instruction_pool"  # the task name of pooled instructions (supervised on their answer)
FIX = "give a Natural-Instructions task file (or a directory of them) with `Definition` and `Instances`"


def read_natural_instructions(path: Path, limit: int) -> list[Sample]:
    """Up to ``limit`` instruction samples, task files taken in name order."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: instruction pool not found; {FIX}")
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: no *.json task files; {FIX}")
    samples: list[Sample] = []
    for file in files:
        try:
            task = json.loads(file.read_text())
            definition = " ".join(task["Definition"]).strip()
            instances = [(item["input"], item["output"][0]) for item in task["Instances"]]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as err:
            raise DataError(f"{file}: not a Natural-Instructions task ({type(err).__name__}: {err}); {FIX}") from None
        for index, (text, output) in enumerate(instances):
            instruction = f"{definition} {text}"
            samples.append(Sample(f"{file.stem}-{index}", INSTRUCTIONS_TASK, "text", instruction, [output], []))
            if len(samples) == limit:
                return samples
    return samples
