"""Render pipeline scenarios (R §一)."""

from __future__ import annotations

from renderchaos.scenario import ScenarioRun, runs
from scenarios import render as R


@runs(R.ENCODER_MISSING)
def test_encoder_missing_falls_back_to_libx264(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    resp = run.submit(title="encoder fallback", duration=2.0)
    run.expect(resp.status_code == 202, "render accepted (202)", f"{resp.status_code} {resp.text[:200]}")
    job_id = resp.json()["id"]
    job = run.detect(lambda: (j := run.ledger.status(job_id)) and j["status"] in
                     ("completed", "failed", "timeout") and j, "the job to finish on a machine without h264_nvenc")
    run.expect(job["status"] == "completed", "job completed with the CPU encoder",
               f"{job['status']}: {job.get('error_code')} {job.get('error_message')}")
    run.expect(job.get("encoder_used") == "libx264", "job record names encoder_used=libx264",
               f"encoder_used={job.get('encoder_used')!r}")
    run.steady_state_after()
