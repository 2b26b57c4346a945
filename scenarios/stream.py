"""Streaming downloads through the remux pipe (PeerTube runbook P)."""

from renderchaos.faults.spec import Described
from renderchaos.platforms.base import Feature
from renderchaos.scenario import Runbook, Scenario
from renderchaos.wait import Wait

CLIENT_DISCONNECT = Scenario(
    id="stream.client_disconnect",
    title="downloads aborted mid-stream leave no ffmpeg behind; concurrent remuxes are capped",
    runbook=Runbook("P", "问题分析 2. 管道通信问题 (客户端断开连接后未正确清理)"),
    faults=(Described("50 downloads aborted mid-stream (client close, "
          "TCP RST, and a reset_peer toxic on a proxy route in front of the API)", ("containers:api", Feature.DOWNLOAD.value)),),
    # the input is planted (assets), the toxic sits on a route of the target's fault proxy, and the
    # cap under test is set through the stack's environment (mark.stack: one API process, 4 remuxes)
    needs=(Feature.ASSETS.value, "fault_proxy", "configurable"),
    tier="resilience",  # renders a 20 s noisy video (~30 MB) and runs 50 downloads
    symptom="ffmpeg -i pipe:0 -c copy -movflags frag_keyframe+empty_moov -f mp4 pipe:1 processes "
            "stuck writing to a pipe nobody reads (500+ in the runbook)",
    remedy="kill the remux process group when the client goes away; cap concurrent remuxes "
           "(REMUX_MAX_CONCURRENT, excess gets 503 busy)",
    detect=Wait(10.0),
    recover=Wait(5.0),  # SCENARIOS.md: zero ffmpeg processes remain within 5 s
    catches=("remux_leave_ffmpeg_on_disconnect", "remux_no_cap"),
)
