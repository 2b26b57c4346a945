"""Render pipeline (R §一)."""

from renderchaos.scenario import Runbook, Scenario

ENCODER_MISSING = Scenario(
    id="render.encoder_missing",
    title="configured encoder absent: fall back to libx264 and record it",
    runbook=Runbook("R", "§一.1 错误3 Encoder not found"),
    tier="gate",
    fault="the stack is configured for h264_nvenc, which this machine lacks (no GPU)",
    symptom="Encoder 'h264_nvenc' not found / cannot load",
    remedy="use the CPU encoder: ffmpeg -c:v libx264",
    detect_s=60.0,
    catches=("render_no_encoder_fallback",),
)
