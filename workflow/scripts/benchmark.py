"""Time a clean `dvc repro` of the default grid and print the wall time spent in each rule.

Usage (from the repository root, environment active):  python workflow/scripts/benchmark.py

It copies the project into a temporary directory (so your data, results and reports are left
alone), runs `dvc repro` there, and sums Snakemake's per-job benchmark files by rule. Jobs run in
parallel, so the per-rule sums add up to more than the wall time.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COPIED = ("Snakefile", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "workflow", ".dvc", "src")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mmcl-bench-") as tmp:
        work = Path(tmp)
        for name in COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, work / name, ignore=shutil.ignore_patterns("tmp", "__pycache__"))
            else:
                shutil.copy(source, work / name)
        subprocess.run(["git", "init", "-q"], cwd=work, check=True)
        started = time.perf_counter()
        subprocess.run(["dvc", "repro"], cwd=work, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started

        per_rule: dict[str, list[float]] = defaultdict(list)
        for tsv in (work / "logs" / "benchmarks").rglob("*.tsv"):
            rule = tsv.relative_to(work / "logs" / "benchmarks").parts[0].removesuffix(".tsv")
            with open(tsv) as f:
                per_rule[rule] += [float(row["s"]) for row in csv.DictReader(f, delimiter="\t")]

    cores = len(os.sched_getaffinity(0))
    print(f"dvc repro of the default grid: {wall / 60:.1f} min wall time ({wall:.0f} s) on {cores} CPU cores")
    print(f"{'rule':<20} {'jobs':>5} {'total s':>9} {'mean s':>8} {'max s':>7}")
    for rule, seconds in sorted(per_rule.items(), key=lambda item: -sum(item[1])):
        total = sum(seconds)
        print(f"{rule:<20} {len(seconds):>5} {total:>9.1f} {total / len(seconds):>8.1f} {max(seconds):>7.1f}")
    sys.exit(0 if wall <= 600 else 1)  # the target for the default grid: 10 minutes


if __name__ == "__main__":
    main()
