"""Rate limits: per API key / user in Redis, per client IP as flood protection (R §二.2, R §六.3).

Both are GCRA token buckets (``rate`` per second, ``burst`` deep), so a
denied client is told exactly when its next request will pass
(``retry_after``), and waiting that long works.

* Per key: in Redis (shared by every API process), one bucket per tenant, so
  one tenant's burst never throttles another.
* Per IP (nginx ``limit_req zone=api rate=10r/s burst=20``): in Redis too, with
  an in-process bucket as fallback when Redis is unreachable, so flood
  protection never disappears.

When Redis is down the per-key limit follows ``RATE_LIMIT_FAIL_MODE``:
``open`` (default: keep serving, availability over strict quotas) or
``closed`` (503 ``rate_limiter_unavailable``). A failed Redis call opens a
1-second circuit so a partitioned Redis costs one short timeout, not one per
request.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis

from refstack.broken import is_broken

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV now (s, float), emission interval (s), burst tolerance (s). Returns {allowed, retry_after_ms}
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at > now + 0.000001 then
  return {0, math.ceil((allow_at - now) * 1000)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, 0}
"""
# planted bug api_ratelimit_no_ttl: the bucket is written without its expiry (R §八: keys pile up)
_GCRA_NO_TTL = _GCRA.replace("tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)",
                             "tostring(new_tat))")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0  # seconds
    degraded: bool = False  # Redis unreachable: decided without it


class LocalBucket:
    """In-process GCRA, the fallback for the per-IP limit."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, key: str, rate: float, burst: int, now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        interval = 1.0 / rate
        with self._lock:
            if len(self._tat) > 50_000:  # bounded memory under a spoofed-address flood
                self._tat = {k: v for k, v in self._tat.items() if v > now}
            tat = max(self._tat.get(key, now), now)
            new_tat = tat + interval
            allow_at = new_tat - interval * burst
            if allow_at > now + 1e-9:  # float drift of repeated adds
                return Decision(False, allow_at - now, degraded=True)
            self._tat[key] = new_tat
            return Decision(True, degraded=True)


class RedisUnavailable(Exception):
    pass


class RateLimiter:
    def __init__(self, client: redis.Redis, *, prefix: str = "refstack:rl:") -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_GCRA_NO_TTL if is_broken("api_ratelimit_no_ttl") else _GCRA)
        self._open_until = 0.0
        self.local = LocalBucket()

    def _redis_check(self, key: str, rate: float, burst: int) -> Decision:
        if time.monotonic() < self._open_until:
            raise RedisUnavailable("circuit open after a recent Redis failure")
        interval = 1.0 / rate
        try:
            allowed, retry_ms = self._script(keys=[self.prefix + key], args=[f"{time.time():.6f}", interval,
                                                                            interval * burst])
        except redis.RedisError as exc:
            self._open_until = time.monotonic() + 1.0
            raise RedisUnavailable(str(exc)) from exc
        return Decision(bool(allowed), int(retry_ms) / 1000.0)

    def check_key(self, key: str, rate: float, burst: int) -> Decision:
        """Per tenant; raises :class:`RedisUnavailable` for the caller's fail-open/closed policy."""
        return self._redis_check("key:" + key, rate, burst)

    def check_ip(self, ip: str, rate: float, burst: int) -> Decision:
        try:
            return self._redis_check("ip:" + ip, rate, burst)
        except RedisUnavailable:
            return self.local.check(ip, rate, burst)
