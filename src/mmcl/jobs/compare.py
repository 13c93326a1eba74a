"""``mmcl compare A B``: did one result set reproduce another?

Each side is a report directory (``summary.csv``, ``results.csv``, ``environment.json``), or a git
revision's copy of one (``--against REV``). Every run-level metric both sides have is set side by side
with its 95% interval, per table (suite, order, backbone) and method. Two estimates **agree** when their
difference is within what the two intervals allow together:

    |mean_A − mean_B| ≤ sqrt(h_A² + h_B²)

where h is each interval's half-width on the side facing the other estimate (a two-sample test at about
the 5% level when the intervals are normal). An estimate without an interval (one seed, a derived
metric) has h = 0, so two of them agree only when equal, as two runs on the same machine are. Undefined
on both sides agrees; on one side it does not.

The verdict reads the headline metrics (``HEADLINE``: final scores, forgetting, plasticity, the linguistic
and generation measures): "reproduced" when every one both sides should have agrees, else "not
reproduced" with the cells that do not. The provenance that differs (code commit, run fingerprints,
machine, threads, libraries) is printed below: where to look when they do not agree.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mmcl.core.registry import ConfigError

HEADLINE = (
    "last_acc",
    "last_cider",
    "learn_acc",
    "forgetting",
    "forgetting_acc",
    "forgetting_cider",
    "vl_score",
    "nlu_delta",
    "nlg_delta",
    "gen_after",
    "inter_forgetting",
)
FILES = ("summary.csv", "results.csv", "environment.json")
Key = tuple[str, str, str, str, str]  # suite, order, backbone, method, metric


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float
    n: int

    def half_width(self, towards: float) -> float:
        """The interval's half-width on the side of ``towards`` (0 without an interval)."""
        edge = self.high if towards > self.mean else self.low
        return 0.0 if math.isnan(edge) else abs(edge - self.mean)

    def text(self) -> str:
        if math.isnan(self.mean):
            return "–"
        interval = "" if math.isnan(self.low) else f" [{self.low:.1f}, {self.high:.1f}]"
        return f"{self.mean:.1f}{interval} (n={self.n})"


def agree(a: Estimate, b: Estimate) -> bool:
    if math.isnan(a.mean) or math.isnan(b.mean):
        return math.isnan(a.mean) and math.isnan(b.mean)
    allowed = math.hypot(a.half_width(b.mean), b.half_width(a.mean))
    return abs(a.mean - b.mean) <= allowed + 1e-9


def number(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


def read_summary(directory: Path) -> dict[Key, Estimate]:
    path = Path(directory) / "summary.csv"
    if not path.exists():
        raise ConfigError(f"{path}: no summary.csv; compare two report directories (reports/ of `dvc repro`)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "ci_low" not in rows[0]:
        raise ConfigError(f"{path}: a summary without intervals (made before they existed); regenerate it")
    return {
        (r["suite"], r["order"], r["backbone"], r["method"], r["metric"]): Estimate(
            number(r["mean"]), number(r["ci_low"]), number(r["ci_high"]), int(r["n_seeds"] or 0)
        )
        for r in rows
    }


def provenance(directory: Path) -> dict[str, str]:
    """The facts that explain a difference, flattened to ``a.b.c: value``: the commits and run fingerprints of
    ``results.csv``, and ``environment.json``'s machines and libraries."""
    facts: dict[str, str] = {}
    results = Path(directory) / "results.csv"
    if results.exists():
        with results.open(newline="") as f:
            rows = list(csv.DictReader(f))
        for column in ("commit", "fingerprint"):
            facts[column] = ", ".join(sorted({row.get(column) or "?" for row in rows}))
    environments = Path(directory) / "environment.json"
    if environments.exists():
        for i, environment in enumerate(json.loads(environments.read_text())["environments"]):
            environment = {k: v for k, v in environment.items() if k != "runs"}
            facts |= flatten(environment, f"environment[{i}]")
    return facts


def flatten(node, prefix: str) -> dict[str, str]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in flatten(value, f"{prefix}.{key}").items()}
    return {prefix: json.dumps(node) if isinstance(node, list) else str(node)}


def from_revision(revision: str, directory: str, into: Path) -> Path:
    """``directory``'s report files as committed at ``revision`` (``git show``), written under ``into``."""
    for name in FILES:
        shown = subprocess.run(["git", "show", f"{revision}:{directory}/{name}"], capture_output=True)
        if shown.returncode == 0:
            (into / name).write_bytes(shown.stdout)
    if not (into / "summary.csv").exists():
        raise ConfigError(f"git show {revision}:{directory}/summary.csv found nothing; is it a report directory?")
    return into


def compare(a_dir: Path, b_dir: Path, a_name: str, b_name: str, log=print) -> bool:
    """Print the comparison of two report directories and the verdict; True when reproduced."""
    a, b = read_summary(a_dir), read_summary(b_dir)
    failed = []
    for table in sorted({key[:3] for key in a | b}):
        log(f"\n## {'/'.join(table)}   ({a_name} | {b_name} | agree)")
        for key in sorted(k for k in a | b if k[:3] == table):
            method, metric = key[3:]
            if key not in a or key not in b:
                status = f"only in {a_name if key in a else b_name}"
                if metric in HEADLINE:
                    failed.append(f"{'/'.join(key)} ({status})")
                log(f"  {method:<24} {metric:<28} {status}")
                continue
            same = agree(a[key], b[key])
            if metric in HEADLINE and not same:
                failed.append(f"{'/'.join(key)}: {a[key].text()} vs {b[key].text()}")
            mark = "yes" if same else "NO"
            log(f"  {method:<24} {metric:<28} {a[key].text():<30} {b[key].text():<30} {mark}")
    differing = provenance(a_dir), provenance(b_dir)
    changed = sorted(k for k in differing[0].keys() | differing[1].keys() if differing[0].get(k) != differing[1].get(k))
    log(f"\nProvenance that differs ({len(changed)}):" if changed else "\nProvenance: the same on both sides.")
    for key in changed:
        log(f"  {key}: {differing[0].get(key, '(absent)')}  |  {differing[1].get(key, '(absent)')}")
    log("\nAgreement: |mean_A − mean_B| ≤ sqrt(h_A² + h_B²), h the 95% interval's half-width (0 without one).")
    if failed:
        log(f"Verdict: not reproduced ({len(failed)} headline cells disagree):")
        for cell in failed:
            log(f"  {cell}")
        return False
    log("Verdict: reproduced (every headline metric agrees)")
    return True


def compare_command(a: str | None, b: str | None, against: str | None, log=print) -> bool:
    """``mmcl compare A B`` or ``mmcl compare --against REV [DIR]`` (DIR: ``reports`` by default)."""
    if against is None:
        if a is None or b is None:
            raise ConfigError("mmcl compare: give two report directories A B, or --against REV [DIR]")
        return compare(Path(a), Path(b), a, b, log)
    directory = a or "reports"
    with tempfile.TemporaryDirectory() as tmp:
        committed = from_revision(against, directory, Path(tmp))
        return compare(committed, Path(directory), f"{against}:{directory}", directory, log)
