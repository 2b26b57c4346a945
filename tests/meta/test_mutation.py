"""Every scenario can fail: the mutation meta-test.

For each deliberately broken variant of the reference stack (``refstack.broken.VARIANTS``) that
some scenario claims to catch (``Scenario.catches``), run those scenarios against a stack
started with that variant, in a subprocess (a real suite run: its own stack, its own reports).
A variant is *caught* when at least one of its scenarios FAILS in its call phase with a
ScenarioFailed that names the scenario. Setup errors do not count as catches.

Also a control: the gate selection passes against the healthy stack.

Writes ``reports/mutation.json``: variants, caught, score, and per variant which scenario
caught it. A planted bug that no scenario claims is listed under ``unclaimed_variants`` and
counts as missed in the score (the goal is 100 %); it does not fail the run. Slow (one stack per variant): marked ``slow``; ``-m "not slow"`` skips it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from refstack.broken import VARIANTS
from scenarios import catalog

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "reports" / "mutation.json"


def _claims() -> dict[str, list[str]]:
    claims: dict[str, list[str]] = {}
    for sc in catalog().values():
        for variant in sc.catches:
            claims.setdefault(variant, []).append(sc.id)
    return claims


CLAIMS = _claims()


def _run_suite(args: list[str], reports: Path, timeout: float, exclusive: bool = False) -> tuple[int, dict, str]:
    """One real suite run in a subprocess. Mutation runs may overlap each other (shared lock);
    the control run holds the lock exclusively: its latency checks (api.flood) compare against a
    baseline and must not share the 2 cores with another stack under test."""
    import fcntl

    with open(ROOT / "reports" / ".suite-runs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        return _run_suite_locked(args, reports, timeout)


def _run_suite_locked(args: list[str], reports: Path, timeout: float) -> tuple[int, dict, str]:
    # its own --basetemp: a session without one deletes the other sessions' unlocked temp dirs
    # (tmp_path_retention_policy = none), the outer run's included
    cmd = [sys.executable, "-m", "pytest", "suites", "-p", "no:cacheprovider", "-q", "--chaos-reports",
           str(reports), "--basetemp", str(reports / "tmp"), "-o", "junit_family=xunit2", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    results = reports / "results.json"
    doc = json.loads(results.read_text()) if results.exists() else {"results": []}
    return proc.returncode, doc, proc.stdout[-4000:] + proc.stderr[-2000:]


def _run_dir(chaos_state) -> Path:
    """Inside this run's temp root, so the reaper removes what a killed test leaves behind."""
    from renderchaos.provisioning.stack.context import run_tmp_root

    root = run_tmp_root(chaos_state.run_id)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _record(run_id: str, variant: str, entry: dict) -> None:
    """Merge one variant's outcome into reports/mutation.json (xdist workers write in turn;
    a file from an earlier run is started afresh)."""
    import fcntl

    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with open(REPORT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = json.loads(REPORT.read_text()) if REPORT.exists() else {}
        per = doc.get("per_variant", {}) if doc.get("run_id") == run_id else {}
        per[variant] = entry
        caught = sum(1 for e in per.values() if e["caught_by"])
        # The denominator is every planted variant: one that no scenario claims is not caught.
        doc = {"run_id": run_id, "variants": len(VARIANTS), "measured": len(per), "caught": caught,
               "score": round(caught / len(VARIANTS), 3) if VARIANTS else None,
               "unclaimed_variants": sorted(set(VARIANTS) - set(CLAIMS)), "per_variant": per}
        REPORT.write_text(json.dumps(doc, indent=2))


def test_every_claimed_variant_exists() -> None:
    unknown = {v: ids for v, ids in CLAIMS.items() if v not in VARIANTS}
    assert not unknown, f"scenarios claim to catch variants that refstack.broken does not define: {unknown}"


def test_every_scenario_claims_a_variant() -> None:
    missing = sorted(sc.id for sc in catalog().values() if not sc.catches)
    assert not missing, f"scenarios that name no broken variant they catch (cannot be shown to fail): {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(CLAIMS))
def test_variant_is_caught(variant: str, chaos_state) -> None:
    ids = CLAIMS[variant]
    expr = " or ".join(f"[{i}]" for i in ids)
    with tempfile.TemporaryDirectory(prefix=f"{chaos_state.owner}-mutation-", dir=_run_dir(chaos_state)) as tmp:
        code, doc, tail = _run_suite(["--chaos-profile", "all", "--chaos-broken", variant, "-k", expr],
                                     Path(tmp), timeout=1500)
    by_id = {r.get("id"): r for r in doc["results"]}
    caught_by, missed_by, not_run = [], [], []
    for sid in ids:
        r = by_id.get(sid)
        if r is None:
            not_run.append(sid)
        elif r["outcome"] == "failed" and sid in r.get("failure", "") and "expected:" in r.get("failure", ""):
            caught_by.append(sid)
        else:
            missed_by.append(f"{sid}: {r['outcome']}")
    _record(chaos_state.run_id, variant, {"caught_by": caught_by, "missed_by": missed_by, "not_run": not_run,
                      "description": VARIANTS.get(variant, "")})
    assert caught_by, (f"broken variant {variant!r} ({VARIANTS.get(variant)}) was caught by none of {ids}: "
                       f"missed {missed_by}, not run {not_run}\n--- suite output ---\n{tail}")


@pytest.mark.slow
def test_gate_passes_against_the_reference_stack(chaos_state) -> None:
    with tempfile.TemporaryDirectory(prefix=f"{chaos_state.owner}-control-", dir=_run_dir(chaos_state)) as tmp:
        code, doc, tail = _run_suite(["--chaos-profile", "gate"], Path(tmp), timeout=900, exclusive=True)
    failed = [r.get("id") for r in doc["results"] if r["outcome"] not in ("passed",)]
    assert code == 0 and not failed, f"gate against the healthy stack: exit {code}, not passed: {failed}\n{tail}"
