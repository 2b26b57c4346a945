"""Deliberately broken variants of the reference stack, for mutation testing.

The suite must prove that each scenario can fail. Starting the stack with
``REFSTACK_BROKEN=name[,name...]`` switches on one or more known bugs. The
normal code path never consults anything but :func:`is_broken`, and with the
variable unset every call returns False.

Every variant is registered in ``VARIANTS`` with the scenario(s) expected to
catch it; an unknown name refuses to start the service (a typo must not run the
healthy stack and report it as "caught nothing").
"""

from __future__ import annotations

import os
from functools import lru_cache

#: variant name -> one-line description of the bug it plants.
#: One section per part of the stack; add a line when you plant a new bug.
VARIANTS: dict[str, str] = {
    # --- render pipeline (refstack/render) ---
    "render_no_group_kill": "on timeout / stall / caller exception the ffmpeg group is left running: orphans (render.timeout, render.hang)",
    "render_no_watchdog": "no progress watchdog: a SIGSTOPped ffmpeg hangs until the total deadline (render.hang)",
    "render_no_encoder_fallback": "configured encoder used as is; absent h264_nvenc fails the job (render.encoder_missing)",
    "render_no_probe_gate": "inputs not ffprobed: missing / corrupt assets reach ffmpeg as render_failed (render.input_missing, render.input_corrupt)",
    "render_no_tolerant_retry": "no -err_detect ignore_err retry: partly damaged inputs fail (render.input_corrupt)",
    "render_complete_without_output": "ENOSPC ignored and output not verified: 'completed' without a valid file (render.storage_full)",
    "render_no_segments": "long renders done in one pass, not 5-minute segments (render.oom)",
    "remux_leave_ffmpeg_on_disconnect": "remux ffmpeg not killed when the client goes away: pile-up (stream.client_disconnect)",
    "remux_no_cap": "remux concurrency cap ignored: unbounded ffmpeg processes (stream.client_disconnect)",
    # --- API (refstack/api) ---
    # --- worker (refstack/worker) ---
    # --- AI provider client (refstack/provider) ---
    "provider_retry_storm": "client retries a 401 Invalid API Key in a tight loop (ai.provider_key_invalid)",
    "provider_no_key_rotation": "client stays on a rate-limited key instead of rotating (ai.provider_rate_limit)",
    "provider_no_deadline": "client ignores the task deadline, waits on a slow provider (queue.task_timeout)",
    # --- live recording (refstack/live) ---
    "live_blocklist_beats_allowlist": "a blocklisted IP is cut even when allowlisted (live.encoder_blacklisted)",
    "live_no_backup_recording": "ingest keeps no local backup recording (live.encoder_blacklisted)",
    "live_no_alert": "no encoder_unreachable alert when an encoder loses the stream (live.encoder_blacklisted)",
    "live_no_reconnect": "encoder gives up after its connection is cut/refused (live.encoder_blacklisted/restart)",
}


class UnknownVariant(ValueError):
    pass


@lru_cache(maxsize=1)
def active() -> frozenset[str]:
    raw = os.environ.get("REFSTACK_BROKEN", "")
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = names - set(VARIANTS)
    if unknown:
        raise UnknownVariant(
            f"REFSTACK_BROKEN names unknown variant(s) {sorted(unknown)}; "
            f"known: {sorted(VARIANTS)}"
        )
    return names


def is_broken(name: str) -> bool:
    """True when the variant ``name`` is switched on for this process."""
    if name not in VARIANTS:
        raise UnknownVariant(f"variant {name!r} is not registered in refstack.broken.VARIANTS")
    return name in active()
