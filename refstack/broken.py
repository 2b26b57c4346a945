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
    "render_final_step_unbounded": "final audio/metadata step has no -t: a looped audio track never ends, the job sits at 99 % (render.stuck_99)",
    "render_no_segments": "long renders done in one pass, not 5-minute segments (render.oom)",
    "remux_leave_ffmpeg_on_disconnect": "remux ffmpeg not killed when the client goes away: pile-up (stream.client_disconnect)",
    "remux_no_cap": "remux concurrency cap ignored: unbounded ffmpeg processes (stream.client_disconnect)",
    # --- API (refstack/api) ---
    "metrics_no_task_failures": "ai/render task failure counters on /metrics stay at 0: HighTaskFailureRate "
                                "can never fire (monitor.alerts.task_failure)",
    "db_migrate_recreates_tables": "schema bootstrap drops and recreates every table at start (a dev-mode "
                                   "reset left in): a restart after a restore wipes the restored data "
                                   "(data.restore)",
    "api_auth_generic_message": "every 401 says 'Invalid API key', never which mistake (api.auth)",
    "api_no_rate_limit": "per-key and per-IP rate limits switched off (api.rate_limit, api.flood)",
    "api_500_on_bad_input": "a well-formed render body with data but no template_id crashes the handler "
                            "into a 500 (KeyError) (api.validation, api.fuzz)",
    "api_500_on_malformed_json": "malformed JSON is not caught: the JSONDecodeError escapes as a 500; "
                                 "well-formed bodies are still validated (api.fuzz, api.validation)",
    "api_500_on_lone_surrogate": "lone UTF-16 surrogates (\"\\ud800\") in JSON strings are not rejected: they "
                                 "reach Postgres / the password hash and crash into a 500 (AI prompt, admin user "
                                 "name, login password) (api.fuzz)",
    "api_500_on_null_ttl": "an explicit null for an integer field of the admin API is passed on as None: "
                           "ttl_seconds: null reaches timedelta() and crashes into a 500 (api.fuzz)",
    "api_500_on_huge_ttl": "ttl_seconds on token creation bounded at 10**12 instead of 10 years: the expiry "
                           "overflows datetime and crashes into a 500 (api.fuzz)",
    "api_500_on_long_asset_name": "input_asset / audio_asset path components over 255 bytes not rejected: "
                                  "ENAMETOOLONG escapes as a 500 (api.fuzz)",
    "api_unknown_key_403": "an unknown API key answers 403 forbidden instead of 401 unauthorized (api.auth)",
    "api_publish_transient": "jobs published as transient messages (delivery_mode 1): a broker restart "
                             "drops every waiting job (queue.broker_down)",
    "api_leak_existence": "another user's job answers 403 instead of 404 (api.not_found)",
    "api_negative_balance": "credits checked then updated without a lock or CHECK (api.credits)",
    "api_accept_when_broker_down": "publish failure ignored: 202 and the job is lost (queue.broker_down)",
    "api_no_pool_preping": "no pool_pre_ping: stale connections after a DB restart give errors (db.down)",
    "api_no_pool_timeout": "pool waits 300 s for a connection instead of failing fast (db.pool_exhausted)",
    "api_no_deadlock_retry": "a deadlocked transaction surfaces as a 500 (db.deadlock)",
    "api_no_indexes": "hot-query indexes on jobs not created (db.slow_query)",
    "db_no_jobs_by_user_index": "the jobs-by-user index (user_id, created_at) not created: 'jobs of one user' "
                                "walks the created_at index with a filter, reading thousands of rows "
                                "(db.slow_query)",
    "api_health_always_ok": "/health answers 200 whatever the dependencies say (db.down, redis.down)",
    "metrics_no_5xx_count": "5xx answers counted as 200 in http_requests_total: HighErrorRate never fires (monitor.alerts)",
    "api_sql_concat_status": "GET /v1/videos?status= pasted into the SQL text, not validated (api.sql_injection)",
    "api_stack_trace_in_body": "debug mode left on: error bodies raised from an exception (500s, malformed "
                               "JSON, bad ids) carry the Python traceback (api.fuzz)",
    "api_slow_submit": "every job submit waits 5 s before its transaction: slow renders submits under load (load.baseline, load.chaos)",
    "api_ratelimit_fails_closed": "a Redis error in the rate limiter answers 503 even with RATE_LIMIT_FAIL_MODE=open (redis.down)",
    "api_ratelimit_no_ttl": "rate-limit buckets written to Redis without a TTL: keys pile up (redis.maxmemory)",
    "api_no_redis_eviction_policy": "the API never sets maxmemory-policy: Redis stays noeviction and refuses writes when full (redis.maxmemory)",
    # --- worker (refstack/worker) ---
    "worker_ack_early": "tasks acked on receipt, not rejected on worker loss: a killed worker loses its job (queue.worker_frozen, render.oom)",
    "worker_double_charge": "every delivery of a task charges the job again (queue.worker_frozen)",
    "worker_no_refund": "failed / timed-out jobs are not refunded (render.*, ai.*)",
    "worker_no_max_tasks_per_child": "children never recycled (worker.memory_leak)",
    "worker_no_time_limit": "no render / Celery time limits: hung renders never end (render.timeout, render.hang)",
    "worker_complete_without_output": "job marked completed even when the output file is missing (render.storage_full)",
    "worker_prefetch_hoard": "prefetch 1000 per worker: running workers hoard the queue, added workers get nothing (queue.backlog)",
    "worker_no_attempt_limit": "redelivered jobs retried forever, never resource_exhausted (render.oom)",
    "worker_queue_not_durable": "render / ai / maintenance queues declared non-durable: a broker restart "
                                "deletes them with every waiting job (queue.broker_down)",
    "worker_redelivery_charge_no_ledger": "a redelivered task charges the job again straight on the balance, "
                                          "without a ledger row: money moves, the journal does not "
                                          "(queue.worker_frozen, render.oom)",
    "worker_heartbeat_no_ttl": "the worker's heartbeat key in Redis is written without a TTL: one key per "
                               "worker process piles up forever (redis.maxmemory)",
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
