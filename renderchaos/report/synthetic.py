"""A synthetic results document of any size, shaped like a real run's (for the report's tests,
the generation benchmark and trying the page out). Deterministic for a given seed.
"""

from __future__ import annotations

import random
import time
from typing import Any

RUNBOOKS: list[dict[str, Any]] = [
    {"key": "R", "title": "故障排查手册", "title_en": "Troubleshooting handbook (render platform)", "file": "render-platform-troubleshooting.zh.txt", "sections": [
        {"id": "§一", "title": "渲染失败", "title_en": "render failures"},
        {"id": "§一.1", "title": "FFmpeg 错误", "title_en": "ffmpeg errors"},
        {"id": "§一.2", "title": "内存不足", "title_en": "out of memory"},
        {"id": "§一.3", "title": "渲染超时", "title_en": "render timeout"},
        {"id": "§二.1", "title": "认证错误", "title_en": "authentication errors"},
        {"id": "§二.2", "title": "限流错误", "title_en": "rate limit errors"},
        {"id": "§三.2", "title": "队列积压", "title_en": "queue backlog"},
        {"id": "§四.2", "title": "数据库连接失败", "title_en": "database connection failure"},
        {"id": "§四.3", "title": "Redis连接失败", "title_en": "Redis connection failure"},
        {"id": "§五.1", "title": "存储空间不足", "title_en": "storage full"},
        {"id": "§六.2", "title": "数据丢失", "title_en": "data loss"},
    ]},
    {"key": "A", "title": "AI 服务故障排查指南", "title_en": "AI service troubleshooting", "file": "ai-service-troubleshooting.zh.txt", "sections": [
        {"id": "§1.1", "title": "401 Unauthorized", "title_en": "401 Unauthorized"},
        {"id": "§2.1", "title": "任务一直处于 pending 状态", "title_en": "job stuck in pending"},
        {"id": "§2.2", "title": "任务失败", "title_en": "job failed"},
        {"id": "§2.3", "title": "任务超时", "title_en": "job timeout"},
        {"id": "§3.1", "title": "API Key 无效", "title_en": "invalid API key"},
        {"id": "§3.3", "title": "配额超限", "title_en": "quota exceeded"},
    ]},
]

_CASES = [
    ("R", "§一.1 错误2 Invalid data found when processing input", "render", "corrupt input fails fast with a clear error"),
    ("R", "§一.2 内存不足 (Killed)", "render", "OOM-killed render is retried in segments"),
    ("R", "§一.3 渲染超时", "render", "a render past its deadline is killed with its process group"),
    ("R", "§二.1 认证错误 (A §1.1 401 Unauthorized)", "api", "every 401 names the mistake"),
    ("R", "§二.2 限流错误", "api", "a burst gets 429 with Retry-After"),
    ("R", "§三.2 队列积压 (Worker卡死)", "queue", "a frozen worker's jobs are re-queued"),
    ("R", "§四.2 数据库连接失败", "deps", "database down: API degrades, jobs survive"),
    ("R", "§四.3 Redis连接失败", "deps", "Redis down: no job lost"),
    ("R", "§六.2 数据丢失", "deps", "broker restart loses no accepted job"),
    ("A", "§2.1 任务一直处于 pending 状态", "ai", "RabbitMQ down: AI jobs wait, then run"),
    ("A", "§2.2 任务失败 / §2.3 任务超时", "ai", "provider unreachable: retries inside the deadline"),
    ("A", "§3.1 API Key 无效", "ai", "provider 401: job fails with a clear message"),
    ("A", "§3.3 配额超限", "ai", "429 on one key: the client rotates keys"),
    ("P", "问题分析 2. 管道通信问题", "stream", "client disconnect leaves no ffmpeg behind"),
]


def synthetic_doc(n: int = 40, seed: int = 1, failures: int = 1, interval_s: float = 0.5,
                  span_s: float = 60.0, with_samples: bool = True) -> dict[str, Any]:
    rng = random.Random(seed)
    now = 1_760_000_000.0 + seed * 3600
    t = now
    results = []
    for i in range(n):
        key, section, area, title = _CASES[i % len(_CASES)]
        sid = f"{area}.case{i:02d}"
        outcome = "failed" if i < failures else "passed"
        span = span_s * rng.uniform(0.6, 1.2)
        inject, heal = span * 0.25, span * 0.55
        ttd = round(rng.uniform(1.0, 8.0), 3)
        ttr = round(rng.uniform(3.0, 20.0), 3)
        phases = [
            {"name": "steady_state_before", "started": 0.2, "ended": inject - 0.5, "ok": True, "note": ""},
            {"name": "inject", "started": inject, "ended": inject + 0.4, "ok": True, "note": f"{area} fault {i}"},
            {"name": "detect", "started": inject + 0.4, "ended": inject + ttd, "ok": True, "note": "symptom seen"},
            {"name": "remedy", "started": heal, "ended": heal + 0.3, "ok": True, "note": "heal"},
            {"name": "steady_state_after", "started": heal + 0.3, "ended": heal + ttr, "ok": outcome == "passed",
             "note": ""},
        ]
        for p in phases:
            p["duration"] = round(p["ended"] - p["started"], 3)
        series: dict[str, list[list[Any]]] = {"latency": [], "jobs": [], "queue_depth": []}
        steps = int(span / interval_s)
        for k in range(steps):
            ts = round(k * interval_s, 3)
            faulty = inject <= ts <= heal
            status: int | None = 200
            ms = rng.uniform(8, 30)
            if faulty:
                ms *= rng.uniform(3, 20)
                r = rng.random()
                status = None if r < 0.15 else 503 if r < 0.4 else 200
            series["latency"].append([ts, round(ms, 1), status])
            if k % 2 == 0:
                done = int(20 * ts / span)
                series["jobs"].append([ts, {"pending": rng.randint(0, 6) + (8 if faulty else 0),
                                            "running": rng.randint(0, 2), "completed": done,
                                            "failed": 1 if ts > heal and i < failures else 0}])
                series["queue_depth"].append([ts, rng.randint(0, 3) + (10 if faulty else 0)])
        entry: dict[str, Any] = {
            "nodeid": f"suites/test_{area}.py::test_case[{sid}]", "id": sid, "title": title,
            "outcome": outcome, "duration_s": round(span + 2.0, 3), "started_at": round(t, 3),
            "runbook": f"{key} {section} (runbook.zh.txt)", "runbook_key": key, "runbook_section": section,
            "time_to_detect_s": ttd, "time_to_recover_s": ttr, "limits": {"detect_s": 20.0, "recover_s": 60.0},
            "accepted": 12, "lost": 1 if outcome == "failed" else 0, "stuck": 0, "duplicated": 0, "recovered": 11,
            "credit_errors": 0, "output_errors": 0, "orphan_ffmpeg": 0, "health_ok": True,
            "canary_ok": outcome == "passed",
            "ledger": {"accepted": 12, "completed": 11, "failed": 0, "timeout": 0, "cancelled": 0,
                       "lost": 1 if outcome == "failed" else 0, "stuck": 0, "duplicated": 0, "credits_checked": 12},
            "phases": phases,
            "faults": [{"description": f"{area} fault {i}", "injected_at": round(inject, 3),
                        "healed_at": round(heal, 3), "heal_error": None}],
            "faults_active_at_end": 0,
            "samples": {"interval_s": interval_s, "series": series} if with_samples else None,
            "notes": [f"synthetic scenario {i}"], "extra": {},
            "replay": f".venv/bin/pytest 'suites/test_{area}.py::test_case[{sid}]' --chaos-seed {seed}",
        }
        if outcome == "failed":
            entry["failure"] = (f"renderchaos.errors.ScenarioFailed: [{sid}] {title}\n  runbook: {entry['runbook']}\n"
                                "  expected: every accepted job terminal and accounted for\n"
                                "  observed: 1 lost job: 7f3c (accepted 12, completed 11)\n---\ntraceback tail")
        results.append(entry)
        t += span + 2.0
    summary: dict[str, int] = {}
    for r in results:
        summary[r["outcome"]] = summary.get(r["outcome"], 0) + 1
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)), "run_id": f"synthetic{seed}",
        "profile": "resilience", "seed": seed, "target": "reference stack", "platform": "refstack", "broken": [],
        "elapsed_s": round(t - now, 1), "interrupted": False, "revision": "0123abcd",
        "engine": {"name": "podman", "version": "4.3.1"},
        "images": {"app": "localhost/renderchaos-app:abc123", "postgres": "docker.io/library/postgres:16"},
        "command": f".venv/bin/pytest suites --chaos-profile resilience --chaos-seed {seed} -n 2",
        "summary": summary, "runbooks": RUNBOOKS, "results": results,
    }
