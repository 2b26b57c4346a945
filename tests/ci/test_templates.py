"""The CI templates users copy (examples/ci/): valid against the CI systems' own schemas, shaped as
the README says (gate on merge requests, sharded resilience nightly, merged report linked), and
every command they run exists here: scripts, modules and their subcommands, pytest options, and
the shard commands select disjoint groups that cover the whole resilience selection."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / "examples" / "ci" / "github-actions.yml"
GITLAB = ROOT / "examples" / "ci" / "gitlab-ci.yml"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    if True in doc and "on" not in doc:  # YAML 1.1 reads the key `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


def _schema_check(path: Path, schema: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("path, schema", [(GITHUB, "vendor.github-workflows"), (GITLAB, "vendor.gitlab-ci")],
                         ids=["github", "gitlab"])
def test_template_is_valid_for_its_ci_system(path: Path, schema: str, tmp_path: Path) -> None:
    ok = _schema_check(path, schema)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # the check bites: the same file with a job that has nothing to run is refused
    broken = tmp_path / path.name
    text = path.read_text()
    broken.write_text(text.replace("runs-on: ubuntu-24.04", "runs-on: [{}]", 1) if schema.endswith("workflows")
                      else text.replace("  stage: gate\n", "  stage: gate\n  when: sometimes\n", 1))
    assert _schema_check(broken, schema).returncode != 0


# ---------------------------------------------------------------------------------------
# What the templates run

def _github_runs() -> Iterator[str]:
    for job in _load(GITHUB)["jobs"].values():
        for step in job["steps"]:
            if "run" in step:
                yield step["run"]


def _gitlab_runs() -> Iterator[str]:
    for name, job in _load(GITLAB).items():
        if isinstance(job, dict) and "script" in job:
            yield from job["script"]


def _commands(script: str) -> Iterator[list[str]]:
    for line in re.split(r"\n|&&|\|\||;", script):
        line = line.strip()
        if line and not line.startswith("#"):
            line = re.sub(r"\$\{\{\s*([^}]+?)\s*\}\}", r"@@\1@@", line)  # one token per expression
            yield shlex.split(line, comments=True)


def _substitute(argv: list[str], group: int = 1) -> list[str]:
    subs = {"@@strategy.job-total@@": "2", "@@matrix.shard@@": str(group), "$CI_NODE_TOTAL": "2",
            "$CI_NODE_INDEX": str(group), "@@github.run_number@@": "7", "$CI_PIPELINE_IID": "7"}
    out = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        out.append(a)
    return out


ALL_COMMANDS = [(n, c) for n, runs in (("github", _github_runs()), ("gitlab", _gitlab_runs()))
                for script in runs for c in _commands(script)]


@pytest.fixture(scope="module")
def pytest_help() -> str:
    return subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120).stdout


def test_every_command_the_templates_run_exists(pytest_help: str) -> None:
    seen = {"script": 0, "module": 0, "pytest": 0}
    for where, argv in ALL_COMMANDS:
        if argv[:1] == ["bash"]:
            assert (ROOT / argv[1]).is_file(), f"{where}: {argv[1]} does not exist"
            seen["script"] += 1
        elif len(argv) > 2 and argv[1] == "-m" and argv[2].startswith("renderchaos"):
            sub = [a for a in argv[3:4] if not a.startswith("-")]
            res = subprocess.run([sys.executable, "-m", argv[2], *sub, "--help"], cwd=ROOT, capture_output=True,
                                 text=True, timeout=60)
            assert res.returncode == 0, f"{where}: {' '.join(argv)}: {res.stderr}"
            for opt in (a.split("=")[0] for a in argv[3:] if a.startswith("--")):
                assert opt in res.stdout, f"{where}: {argv[2]} {sub} has no option {opt}"
            seen["module"] += 1
        elif argv[0].endswith("pytest"):
            for opt in (a.split("=")[0] for a in argv if a.startswith("--")):
                assert re.search(rf"\s{re.escape(opt)}[ =,\n]", pytest_help), f"{where}: pytest has no option {opt}"
            seen["pytest"] += 1
    assert seen["script"] >= 4 and seen["module"] >= 5 and seen["pytest"] >= 4, seen


def _pytest_lines(profile: str) -> list[tuple[str, list[str]]]:
    return [(w, a) for w, a in ALL_COMMANDS if a[0].endswith("pytest") and f"{profile}" in a]


def _collect(argv: list[str]) -> set[str]:
    args = _substitute(argv)[1:]
    if "-n" in args:  # xdist workers are irrelevant to what is selected
        i = args.index("-n")
        del args[i:i + 2]
    # run the template's own command line, collection only (no containers)
    res = subprocess.run([sys.executable, "-m", "pytest", *args, "--collect-only", "-q", "-p", "no:cacheprovider"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return {line for line in res.stdout.splitlines() if line.startswith("suites/") and "::" in line}


@pytest.mark.parametrize("where", ["github", "gitlab"])
def test_shard_commands_split_the_resilience_selection_exactly(where: str) -> None:
    [(_, argv)] = [(w, a) for w, a in _pytest_lines("resilience") if w == where]
    full = _collect(["pytest", "suites", "--chaos-profile", "resilience"])
    groups = [_collect(_substitute(argv, g)) for g in (1, 2)]
    assert groups[0] and groups[1]
    assert not groups[0] & groups[1], "the shards overlap"
    assert groups[0] | groups[1] == full, "the shards together must run the whole resilience selection"


def test_github_shape() -> None:
    doc = _load(GITHUB)
    assert {"pull_request", "schedule"} <= set(doc["on"])
    jobs = doc["jobs"]
    assert "pull_request" in jobs["gate"]["if"]
    gate_runs = " ".join(s.get("run", "") for s in jobs["gate"]["steps"])
    assert "--chaos-profile gate" in gate_runs
    shards = jobs["resilience"]["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, len(shards) + 1)) and len(shards) >= 2
    assert jobs["report"]["needs"] == "resilience" and "always()" in jobs["report"]["if"]
    for name in ("gate", "resilience", "report"):
        uploads = [s for s in jobs[name]["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
        assert uploads and all(s.get("if") == "always()" for s in uploads), f"{name}: reports uploaded always"
    for name in ("gate", "report"):
        summary = " ".join(s.get("run", "") for s in jobs[name]["steps"])
        assert "GITHUB_STEP_SUMMARY" in summary and "artifact-url" in summary, f"{name}: HTML report linked"
    report_runs = " ".join(s.get("run", "") for s in jobs["report"]["steps"])
    assert "renderchaos.shards merge shards/renderchaos-shard-*" in report_runs
    download = next(s for s in jobs["report"]["steps"] if str(s.get("uses", "")).startswith("actions/download"))
    assert download["with"]["pattern"] == "renderchaos-shard-*"


def test_gitlab_shape() -> None:
    doc = _load(GITLAB)
    assert doc["gate"]["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "merge_request_event"'
    assert doc["gate"]["artifacts"]["reports"]["junit"] == "reports/junit.xml"
    assert "reports/report.html" in doc["gate"]["artifacts"]["paths"] and doc["gate"]["artifacts"]["expose_as"]
    assert doc["resilience"]["parallel"] >= 2
    assert any('"schedule"' in r["if"] for r in doc["resilience"]["rules"])
    assert doc["report"]["needs"][0]["job"] == "resilience"
    assert any("renderchaos.shards merge reports/shard-*" in line for line in doc["report"]["script"])
    assert doc["report"]["artifacts"]["expose_as"] and doc["report"]["artifacts"]["when"] == "always"
