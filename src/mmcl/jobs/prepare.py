"""``mmcl prepare``: generate (or link from converted datasets) a suite's data in the common JSONL format,
with the word-level tokenizer of its vocabulary and a manifest of what was written."""

from __future__ import annotations

import time
from pathlib import Path

from mmcl.config.schema import Params
from mmcl.core.io import atomic_path, sha256_file, write_json
from mmcl.core.provenance import record
from mmcl.data import GENERATORS
from mmcl.data.vocab import build_word_tokenizer


def prepare(params: Params, suite: str, out: Path, log=print) -> None:
    config = params.suites[suite]
    started = time.perf_counter()
    generator = GENERATORS.get(config.generator)(config)
    with atomic_path(out) as tmp:
        # Converted datasets live beside the suite's directory: data/<dataset>, data/<suite>.
        summary = generator.generate(tmp, out.parent) if generator.reads_datasets else generator.generate(tmp)
        build_word_tokenizer(tmp / "vocab.txt", tmp / "tokenizer")
        files = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.glob("*/*.jsonl"))}
        summary = {"suite": suite, "seconds": round(time.perf_counter() - started, 2), **summary, "sha256": files}
        write_json(tmp / "manifest.json", summary)
        record(tmp / "provenance.json", params, {"command": "prepare", "suite": suite})
    log(f"prepared suite {suite} in {out} ({summary['seconds']} s)")
