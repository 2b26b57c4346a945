"""Worker pieces that need no broker or database."""

import shutil
import subprocess
import sys

import pytest

from refstack.settings import Settings
from refstack.worker import orphans
from refstack.worker.celery_app import make_celery
from refstack.worker.tasks import _spec, register


def test_celery_delivery_guarantees():
    app = make_celery(Settings.from_env({}))
    c = app.conf
    assert c.task_acks_late and c.task_reject_on_worker_lost  # R §三.2: a lost worker's task is redelivered
    assert c.worker_prefetch_multiplier == 1
    assert c.task_default_delivery_mode == "persistent"
    assert all(q.durable for q in c.task_queues)
    assert c.worker_max_tasks_per_child == 50  # A §5.2
    assert c.broker_connection_max_retries is None  # reconnect forever after a broker outage


def test_planted_worker_bugs_change_the_config(planted):
    planted("worker_ack_early", "worker_no_max_tasks_per_child")
    c = make_celery(Settings.from_env({})).conf
    assert not c.task_acks_late and not c.task_reject_on_worker_lost
    assert c.worker_max_tasks_per_child is None


def test_time_limits_follow_settings():
    s = Settings.from_env({"RENDER_TIME_LIMIT": "100", "AI_TASK_TIMEOUT": "7"})
    app = make_celery(s)
    register(app, s)
    render = app.tasks["refstack.render"]
    ai = app.tasks["refstack.ai"]
    assert render.soft_time_limit > 100 and render.time_limit > render.soft_time_limit
    assert ai.soft_time_limit > 7  # the job ends `timeout` at AI_TASK_TIMEOUT via the client deadline, not earlier


def test_spec_from_params(tmp_path):
    s = Settings.from_env({"ASSETS_DIR": str(tmp_path), "RENDER_ENCODER": "h264_nvenc"})
    spec = _spec(s, {"template_id": "t", "title": "Hi", "width": 320, "height": 240, "duration": 2, "fps": 25,
                     "colours": ["navy", "#ffcc00"], "input_asset": "a/b.mp4", "data": {"preset": "placebo"}})
    assert spec.encoder == "h264_nvenc" and spec.background_color == "navy" and spec.text_color == "#ffcc00"
    assert spec.background_video == tmp_path / "a/b.mp4"
    assert spec.preset == "veryfast"  # slow presets are refused (R §三)


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ffmpeg") is None, reason="linux + ffmpeg")
def test_orphan_reaper_kills_ffmpeg_children():
    proc = subprocess.Popen(["ffmpeg", "-nostdin", "-v", "quiet", "-re", "-f", "lavfi", "-i", "nullsrc",
                             "-f", "null", "-"], start_new_session=True)
    try:
        assert (proc.pid, "ffmpeg") in orphans.orphans_of(__import__("os").getpid())
        assert orphans.reap_once() >= 1
        assert proc.poll() is not None or proc.returncode is not None
    finally:
        if proc.poll() is None:
            proc.kill()
