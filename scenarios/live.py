"""Live recording (AVideo runbook V: encoder IP on the blacklist)."""

from renderchaos.faults.spec import Described
from renderchaos.platforms.base import Feature
from renderchaos.scenario import Runbook, Scenario
from renderchaos.wait import Wait

ENCODER_BLACKLISTED = Scenario(
    id="live.encoder_blacklisted",
    title="encoder IP blocklisted mid-stream: allowlist wins, alert, backup, resume, full recording",
    runbook=Runbook("V", "解决方案: IP白名单配置 / 监控机制加强 / 应急预案: 本地录制备份"),
    faults=(Described("a careless block of the encoders' range (127.0.0.2/31) during a live stream; "
          "127.0.0.3 is allowlisted, 127.0.0.2 is not", (Feature.LIVE.value,)),),
    needs=("reference_stack",),  # the encoders and the publisher are containers of the reference stack
    tier="resilience",  # a 20 s real-time live stream
    symptom="the stream is pushed but the encoder cannot fetch it: recording lost (Dave's 2 h show)",
    remedy="put the encoder IP on the allowlist",
    detect=Wait(10.0),  # SCENARIOS.md: encoder_unreachable alert within 10 s
    recover=Wait(10.0),
    catches=("live_blocklist_beats_allowlist", "live_no_backup_recording", "live_no_alert", "live_no_reconnect"),
    canary=False,  # the render pipeline is not involved
)

ENCODER_RESTART = Scenario(
    id="live.encoder_restart",
    title="encoder process killed mid-stream: alert, recording resumes after restart, admin re-record",
    runbook=Runbook("V", "监控机制加强 / 应急预案: 管理员手动干预 (强制重新录制)"),
    faults=(Described("SIGKILL the encoder's container mid-stream", (Feature.LIVE.value, "reference_stack")),),
    tier="resilience",
    symptom="the encoder stops recording; encoder_unreachable",
    remedy="restart the encoder; admin forces a re-record from the local backup",
    detect=Wait(10.0),
    recover=Wait(15.0),
    catches=("live_no_alert", "live_no_backup_recording"),
    canary=False,
)
