"""The locked environment: the README's two commands install from the locks, CI runs the second one, and each
lock pins every dependency of pyproject.toml at a version its range allows."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]


def pins(lock: Path) -> dict[str, str]:
    lines = (line.split()[0] for line in lock.read_text().splitlines() if re.match(r"[A-Za-z0-9]", line))
    return {canonical(name): version for name, version in (line.split("==") for line in lines)}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_readme_commands_install_from_the_locks_and_ci_runs_the_test_command():
    run, test = readme_commands()
    assert "-r requirements/lock.txt" in run and run.endswith("dvc repro")
    assert "-r requirements/lock-test.txt" in test and test.endswith("pytest")
    assert test in (ROOT / ".ci" / "run").read_text(), ".ci/run runs the README's test command"
    torch = (ROOT / "requirements" / "torch.txt").read_text().split()[-1]
    assert f"pip install {torch} " in run and f"pip install {torch} " in test


@pytest.mark.parametrize("lock, extras", [("lock.txt", ()), ("lock-test.txt", ("test", "lm-eval"))])
def test_each_lock_pins_every_dependency_within_its_range(lock, extras):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for extra in extras for r in project["optional-dependencies"][extra]]
    pinned = pins(ROOT / "requirements" / lock)
    for requirement in wanted:
        name = canonical(requirement.name)
        if name == "torch":  # pinned by the commands themselves (requirements/torch.txt)
            continue
        assert name in pinned, f"requirements/{lock} does not pin {name}; refresh it (README, Development)"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]} is outside {requirement}"


def test_the_code_commit_is_the_last_one_that_changed_the_code(tmp_path):
    import subprocess

    from mmcl.core.provenance import git_state

    def commit(path: str, text: str) -> str:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
        for args in (["add", path], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", path]):
            subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    code = commit("src/mmcl/x.py", "x = 1\n")
    reports = commit("reports/summary.csv", "a,b\n")  # regenerated reports, committed after the code
    state = git_state(tmp_path / "reports")  # from a subdirectory too
    assert (state["commit"], state["code_commit"]) == (reports, code)
