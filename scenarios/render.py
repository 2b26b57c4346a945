"""Render pipeline (R §一)."""

from renderchaos.faults.spec import Described, FillStorage, Input, MemoryLimit, StopRender
from renderchaos.platforms.base import Feature
from renderchaos.scenario import Runbook, Scenario
from renderchaos.wait import Wait

ENCODER_MISSING = Scenario(
    id="render.encoder_missing",
    title="configured encoder absent: fall back to libx264 and record it",
    runbook=Runbook("R", "§一.1 错误3 Encoder not found"),
    tier="gate",
    faults=(Described("the platform is configured for h264_nvenc, which this machine lacks (no GPU)",
                      (Feature.ENCODER_CONFIG.value,)),),
    symptom="Encoder 'h264_nvenc' not found / cannot load",
    remedy="use the CPU encoder: ffmpeg -c:v libx264",
    detect=Wait(60.0),
    catches=("render_no_encoder_fallback",),
)

INPUT_MISSING = Scenario(
    id="render.input_missing",
    title="asset missing or unreadable: input_not_found / input_permission_denied naming the path",
    runbook=Runbook("R", "§一.1 错误1 No such file or directory"),
    tier="gate",
    faults=(Input("an input that does not exist / is mode 000, and an input that vanishes or loses its read "
                  "bits after the platform accepted the job (workers frozen meanwhile)"),),
    needs=(Feature.ASSETS.value, "containers:worker"),
    symptom="No such file or directory / Permission denied",
    remedy="ls -la the path, chmod 644, use the right path; nothing to retry",
    detect=Wait(30.0),
    catches=("render_no_probe_gate",),
)

INPUT_CORRUPT = Scenario(
    id="render.input_corrupt",
    title="corrupt input: ffprobe gate fails it as invalid_media at once; partly damaged input "
          "completes after one tolerant retry",
    runbook=Runbook("R", "§一.1 错误2 Invalid data found when processing input"),
    tier="gate",
    faults=(Input("corrupt media from media_fixtures (truncated, bit-flipped, zero bytes, wrong content, garbage "
                  "header, unsupported codec, absurd dimensions) as the input video"),),
    needs=(Feature.ASSETS.value,),
    symptom="Invalid data found when processing input",
    remedy="ffprobe input first; re-encode; decode tolerantly (-err_detect ignore_err)",
    detect=Wait(45.0),
    catches=("render_no_probe_gate", "render_no_tolerant_retry"),
)

INPUT_CORRUPT_CORPUS = Scenario(
    id="render.input_corrupt.corpus",
    title="every entry of the corrupt-media corpus gets the gate's verdict",
    runbook=Runbook("R", "§一.1 错误2 Invalid data found when processing input"),
    tier="resilience",
    faults=(Input("all of media_fixtures' corpus (>= 25 variants), as input video or audio track"),),
    needs=(Feature.ASSETS.value,),
    symptom="Invalid data found when processing input",
    remedy="ffprobe input first; decode tolerantly (-err_detect ignore_err)",
    detect=Wait(240.0),
    catches=("render_no_probe_gate", "render_no_tolerant_retry"),
)

#: the reference stack's configuration for timeout and hang (one worker, short limits); they
#: share one dedicated stack (same options: the plugin keeps it between them)
RENDER_TIME_LIMIT_S = 30
RENDER_STALL_TIMEOUT_S = 10
SLOW_STACK = dict(workers=1, env={"RENDER_TIME_LIMIT": str(RENDER_TIME_LIMIT_S),
                                  "RENDER_STALL_TIMEOUT": str(RENDER_STALL_TIMEOUT_S)})

TIMEOUT = Scenario(
    id="render.timeout",
    title="render over its time limit: process group killed, job timeout, the worker moves on",
    runbook=Runbook("R", "§一.3 渲染超时 (超时,终止进程组)"),
    tier="resilience",
    faults=(Described(f"a render far longer than the platform's time limit ({RENDER_TIME_LIMIT_S}s on the reference "
                      "stack; one worker)", (Feature.RENDER_LIMITS.value, "containers:worker")),),
    symptom="render time exceeds what is expected",
    remedy="kill the process group at the deadline (os.killpg), mark the job timeout",
    detect=Wait(60.0),
    catches=("worker_no_time_limit", "render_no_group_kill"),
)

HANG = Scenario(
    id="render.hang",
    title="ffmpeg frozen without CPU: watchdog kills the group, job timeout, no orphans",
    runbook=Runbook("R", "§一.3 渲染超时 原因4: 死锁 (进程挂起,无CPU占用)"),
    tier="resilience",
    faults=(StopRender("worker"),),
    symptom="process hung, no CPU use, progress frozen",
    remedy="kill (the whole group) and move on",
    detect=Wait(22.0),  # stall limit 10 s + slack; before the 30 s total deadline
    catches=("render_no_watchdog", "render_no_group_kill", "worker_no_time_limit"),
)

OOM_LIMIT = "350m"
OOM = Scenario(
    id="render.oom",
    title="worker memory limit hit mid-render: redelivered and completed, or bounded failure; segments keep "
          "memory flat",
    runbook=Runbook("R", "§一.2 内存不足 (Killed; 方案1: 分段处理)"),
    tier="resilience",
    faults=(MemoryLimit("worker", OOM_LIMIT),),
    needs=(Feature.JOB_VIEWS.value,),
    symptom="Killed (kernel OOM kill)",
    remedy="render in segments / lower the resolution; bounded attempts, then resource_exhausted",
    detect=Wait(120.0),
    recover=Wait(120.0),
    catches=("render_no_segments", "worker_ack_early", "worker_no_attempt_limit", "worker_redelivery_charge_no_ledger"),
)

STUCK_99 = Scenario(
    id="render.stuck_99",
    title="bad audio at the final step: the job never sits at 99 %, it ends with ffmpeg's error",
    runbook=Runbook("R", "§八 Q: 视频渲染一直卡在99%?"),
    tier="gate",
    faults=(Input("damaged audio track (media_fixtures audio_payload_damaged); an audio track that turns to "
                  "garbage after the render started, so the final audio/metadata step fails"),),
    needs=(Feature.ASSETS.value, Feature.AUDIO_TRACKS.value),
    symptom="progress stops at 99 %, job never finishes",
    remedy="bound the final step (deadline + watchdog), fail with ffmpeg's error, tolerant retry once",
    detect=Wait(60.0),
    catches=("render_final_step_unbounded",),
)

STORAGE_FULL = Scenario(
    id="render.storage_full",
    title="output volume full: job failed storage_full, never completed without a file",
    runbook=Runbook("R", "§八 批量任务显示完成,但部分视频缺失 -> 存储空间是否已满"),
    tier="gate",
    faults=(FillStorage("api"),),
    symptom="batch shows complete but videos are missing",
    remedy="free space on the output volume (delete the filler), render again",
    detect=Wait(45.0),
    catches=("worker_complete_without_output", "render_complete_without_output"),
)
