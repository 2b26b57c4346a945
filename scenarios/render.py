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

INPUT_MISSING = Scenario(
    id="render.input_missing",
    title="asset missing or unreadable: input_not_found / input_permission_denied naming the path",
    runbook=Runbook("R", "§一.1 错误1 No such file or directory"),
    tier="gate",
    needs=("render_api", "containers"),
    fault="input asset does not exist / is mode 000; and an asset that vanishes or loses its read bits "
          "after the API accepted the job (workers frozen meanwhile)",
    symptom="No such file or directory / Permission denied",
    remedy="ls -la the path, chmod 644, use the right path; nothing to retry",
    detect_s=30.0,
    catches=("render_no_probe_gate",),
)

INPUT_CORRUPT = Scenario(
    id="render.input_corrupt",
    title="corrupt input: ffprobe gate fails it as invalid_media at once; partly damaged input "
          "completes after one tolerant retry",
    runbook=Runbook("R", "§一.1 错误2 Invalid data found when processing input"),
    tier="gate",
    needs=("render_api", "containers"),
    fault="corrupt media from media_fixtures (truncated, bit-flipped, zero bytes, wrong content, garbage "
          "header, unsupported codec, absurd dimensions) as the background video",
    symptom="Invalid data found when processing input",
    remedy="ffprobe input first; re-encode; decode tolerantly (-err_detect ignore_err)",
    detect_s=45.0,
    catches=("render_no_probe_gate", "render_no_tolerant_retry"),
)

INPUT_CORRUPT_CORPUS = Scenario(
    id="render.input_corrupt.corpus",
    title="every entry of the corrupt-media corpus gets the gate's verdict",
    runbook=Runbook("R", "§一.1 错误2 Invalid data found when processing input"),
    tier="resilience",
    needs=("render_api", "containers"),
    fault="all of media_fixtures' corpus (>= 25 variants), as background video or audio track",
    symptom="Invalid data found when processing input",
    remedy="ffprobe input first; decode tolerantly (-err_detect ignore_err)",
    detect_s=240.0,
    catches=("render_no_probe_gate", "render_no_tolerant_retry"),
)

# timeout and hang share one dedicated stack (same options: the plugin keeps it between them)
SLOW_STACK = dict(workers=1, env={"RENDER_TIME_LIMIT": "30", "RENDER_STALL_TIMEOUT": "10"})

TIMEOUT = Scenario(
    id="render.timeout",
    title="render over its time limit: process group killed, job timeout, the worker moves on",
    runbook=Runbook("R", "§一.3 渲染超时 (超时,终止进程组)"),
    tier="resilience",
    needs=("render_api", "containers"),
    fault="a render far longer than RENDER_TIME_LIMIT=30s (one worker)",
    symptom="render time exceeds what is expected",
    remedy="kill the process group at the deadline (os.killpg), mark the job timeout",
    detect_s=60.0,
    catches=("worker_no_time_limit", "render_no_group_kill"),
)

HANG = Scenario(
    id="render.hang",
    title="ffmpeg frozen without CPU: watchdog kills the group, job timeout, no orphans",
    runbook=Runbook("R", "§一.3 渲染超时 原因4: 死锁 (进程挂起,无CPU占用)"),
    tier="resilience",
    needs=("render_api", "containers"),
    fault="SIGSTOP on the render's ffmpeg inside the worker (RENDER_STALL_TIMEOUT=10s, limit 30s)",
    symptom="process hung, no CPU use, progress frozen",
    remedy="kill (the whole group) and move on",
    detect_s=22.0,  # stall limit 10 s + slack; before the 30 s total deadline
    catches=("render_no_watchdog", "render_no_group_kill", "worker_no_time_limit"),
)

OOM = Scenario(
    id="render.oom",
    title="worker memory limit hit mid-render: bounded failure or completion; segments keep memory flat",
    runbook=Runbook("R", "§一.2 内存不足 (Killed; 方案1: 分段处理)"),
    tier="resilience",
    needs=("render_api", "containers"),
    fault="worker container limited to 350 MiB; a 4K render with preset medium exceeds it",
    symptom="Killed (kernel OOM kill)",
    remedy="render in segments / lower the resolution; bounded attempts, then resource_exhausted",
    detect_s=120.0,
    recover_s=120.0,
    catches=("render_no_segments",),
)

STUCK_99 = Scenario(
    id="render.stuck_99",
    title="bad audio at the final step: the job never sits at 99 %, it ends with ffmpeg's error",
    runbook=Runbook("R", "§八 Q: 视频渲染一直卡在99%?"),
    tier="gate",
    needs=("render_api", "containers"),
    fault="damaged audio track (media_fixtures audio_payload_damaged); an audio track that turns to "
          "garbage after the render started, so the final audio/metadata step fails",
    symptom="progress stops at 99 %, job never finishes",
    remedy="bound the final step (deadline + watchdog), fail with ffmpeg's error, tolerant retry once",
    detect_s=60.0,
    catches=("render_final_step_unbounded",),
)

STORAGE_FULL = Scenario(
    id="render.storage_full",
    title="output volume full: job failed storage_full, never completed without a file",
    runbook=Runbook("R", "§八 批量任务显示完成,但部分视频缺失 -> 存储空间是否已满"),
    tier="gate",
    needs=("render_api", "containers"),
    fault="/data/storage filled to ENOSPC from inside the API container",
    symptom="batch shows complete but videos are missing",
    remedy="free space on the output volume (delete the filler), render again",
    detect_s=45.0,
    catches=("worker_complete_without_output",),
)
