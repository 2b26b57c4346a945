"""The client the worker's AI task uses to call the provider (runbook A §3, §2.3).

Policy, per answer::

    200                      -> the result
    401 Invalid API Key      -> ProviderUnauthorized at once: never retried (no retry storm, A §3.1)
    404 model not available  -> ModelNotFound at once: never retried (A §3.2)
    429 Rate limit exceeded  -> this key cools down for Retry-After (capped); switch to the next
                                key at once (A §3.3 "use several keys in rotation"); when every
                                key is cooling, wait for the first one, or give up with
                                ProviderRateLimited if that is past the deadline
    5xx / connect error /    -> exponential backoff with jitter, then try again
    read timeout
    anything else 4xx        -> ProviderError("provider_bad_request") at once

Everything is bounded by ``deadline`` (the task's AI_TASK_TIMEOUT, A §2.3): a request never
waits longer than the time left, a backoff never sleeps past it, and when it is spent the
client raises the error that describes the last failure (``timeout`` when the provider was
too slow, ``provider_unavailable`` when it failed or was unreachable,
``provider_rate_limited`` when every key was throttled).

Exceptions::

    ProviderError(code, message)        code: str, plus fields status, attempts, elapsed, key
    ├── ProviderUnauthorized            provider_unauthorized
    ├── ModelNotFound                   model_not_found
    ├── ProviderRateLimited             provider_rate_limited
    ├── ProviderUnavailable             provider_unavailable
    └── ProviderTimeout                 timeout

All of them pickle (Celery moves them between processes).
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from refstack.broken import is_broken

# ---- errors ---------------------------------------------------------------------------


def _rebuild(cls: type, state: dict[str, Any]) -> "ProviderError":
    exc = cls.__new__(cls)
    exc.__dict__.update(state)
    exc.args = (state.get("message", ""),)
    return exc


class ProviderError(Exception):
    """An AI provider call failed. ``code`` is the machine-readable reason."""

    code = "provider_error"

    def __init__(self, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status: int | None = None
        self.attempts: int = 0
        self.elapsed: float = 0.0
        self.key: str | None = None  # masked key that saw the final answer
        for name, value in fields.items():
            setattr(self, name, value)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), dict(self.__dict__)))


class _Coded(ProviderError):
    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(type(self).code, message, **fields)


class ProviderUnauthorized(_Coded):
    code = "provider_unauthorized"


class ModelNotFound(_Coded):
    code = "model_not_found"


class ProviderRateLimited(_Coded):
    code = "provider_rate_limited"


class ProviderUnavailable(_Coded):
    code = "provider_unavailable"


class ProviderTimeout(_Coded):
    code = "timeout"


# ---- deadline -------------------------------------------------------------------------


class SupportsRemaining(Protocol):
    def remaining(self) -> float: ...


@dataclass(frozen=True)
class Deadline:
    """A point on the monotonic clock (renderchaos.wait.Deadline is accepted too)."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> "Deadline":
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())


def _as_deadline(deadline: float | SupportsRemaining | None, default: float) -> SupportsRemaining:
    if deadline is None:
        return Deadline.after(default)
    if isinstance(deadline, (int, float)):
        return Deadline.after(float(deadline))
    return deadline


def mask(key: str) -> str:
    return f"...{key[-4:]}" if len(key) > 4 else "***"


# ---- client ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retries. The deadline bounds them too; whichever comes first wins."""

    backoff_base_s: float = 0.1  # first backoff is in [base/2, base]
    backoff_cap_s: float = 5.0
    max_attempts: int = 12  # over all keys, for one generate()
    max_retry_after_s: float = 30.0  # a provider's Retry-After is trusted up to this
    connect_timeout_s: float = 3.0


class ProviderClient:
    """``ProviderClient(base_url, keys, timeout)``; ``generate(model, prompt, deadline)``.

    ``timeout`` is the per-request ceiling; ``deadline`` (seconds from now, or an object with
    ``remaining()``) bounds the whole call including retries. Thread-safe; keep one per worker.
    """

    def __init__(
        self,
        base_url: str,
        keys: list[str],
        timeout: float = 30.0,
        *,
        policy: RetryPolicy = RetryPolicy(),
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not keys:
            raise ValueError("ProviderClient needs at least one API key (AI provider keys are empty)")
        self.base_url = base_url.rstrip("/")
        self.keys = list(keys)
        self.timeout = float(timeout)
        self.policy = policy
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._current = 0  # sticky: stay on a key until it is throttled
        self._cooling_until = [0.0] * len(self.keys)  # monotonic time per key
        self._http = httpx.Client(base_url=self.base_url, transport=transport)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **kwargs: Any) -> "ProviderClient":
        """From ``AI_PROVIDER_URL``, ``AI_PROVIDER_KEYS`` (comma list; the runbook's
        ``AIHUBMIX_API_KEYS`` / ``AIHUBMIX_API_KEY`` are accepted too) and
        ``AI_PROVIDER_TIMEOUT`` (per-request ceiling, s; default 30)."""
        e = os.environ if env is None else env
        url = e.get("AI_PROVIDER_URL", "")
        raw = e.get("AI_PROVIDER_KEYS") or e.get("AIHUBMIX_API_KEYS") or e.get("AIHUBMIX_API_KEY") or ""
        keys = [k.strip() for k in raw.split(",") if k.strip()]
        if not url or not keys:
            raise ValueError(
                f"AI provider not configured: AI_PROVIDER_URL={url!r}, {len(keys)} key(s) in AI_PROVIDER_KEYS; "
                f"set both (runbook A §3.1)"
            )
        return cls(url, keys, float(e.get("AI_PROVIDER_TIMEOUT", "30")), **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ProviderClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- key rotation --
    def _pick_key(self) -> tuple[int, float]:
        """The key to use now, or (index, seconds until the first key cools down)."""
        now = time.monotonic()
        with self._lock:
            n = len(self.keys)
            for step in range(n):
                i = (self._current + step) % n
                if self._cooling_until[i] <= now:
                    self._current = i
                    return i, 0.0
            i = min(range(n), key=lambda k: self._cooling_until[k])
            return i, self._cooling_until[i] - now

    def _throttle(self, index: int, retry_after: float) -> None:
        with self._lock:
            self._cooling_until[index] = time.monotonic() + retry_after
            if is_broken("provider_no_key_rotation"):
                # BUG: keep hammering the throttled key instead of rotating.
                self._cooling_until[index] = 0.0
                return
            if self._current == index:
                self._current = (index + 1) % len(self.keys)

    def _backoff(self, failures: int) -> float:
        d = min(self.policy.backoff_cap_s, self.policy.backoff_base_s * (2 ** max(0, failures - 1)))
        return d / 2 + self._rng.uniform(0, d / 2)  # "equal jitter": grows, never collapses to 0

    # -- public API --
    def list_models(self, deadline: float | SupportsRemaining | None = None) -> list[dict[str, Any]]:
        """The provider's models, each ``{"id", "available"}``. One request, no retries."""
        dl = _as_deadline(deadline, self.timeout)
        index, _ = self._pick_key()
        key = self.keys[index]
        t0 = time.monotonic()
        try:
            resp = self._http.get(
                "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=self._timeout(dl)
            )
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"GET /v1/models timed out: {exc}", attempts=1) from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"cannot reach {self.base_url}: {exc}", attempts=1) from exc
        if resp.status_code != 200:
            raise self._classify(resp, key, attempts=1, elapsed=time.monotonic() - t0, model=None)
        return list(resp.json().get("data", []))

    def generate(
        self, model: str, prompt: str, deadline: float | SupportsRemaining | None = None
    ) -> dict[str, Any]:
        """Generate with ``model``; the provider's JSON answer (``output`` holds the text)."""
        dl = _as_deadline(deadline, self.timeout)
        if is_broken("provider_no_deadline"):
            # BUG: ignore the task's deadline; only the per-request timeout bounds a call.
            dl = Deadline.after(self.timeout * self.policy.max_attempts)
        t0 = time.monotonic()
        attempts = 0
        failures = 0  # transient failures in a row, for the backoff exponent
        last: ProviderError | None = None

        def give_up(err: ProviderError) -> ProviderError:
            err.attempts = attempts
            err.elapsed = time.monotonic() - t0
            return err

        storm = is_broken("provider_retry_storm")
        while True:
            if dl.remaining() <= 0 or (attempts >= self.policy.max_attempts and not storm):
                if last is None:
                    last = ProviderTimeout("deadline already spent before the first attempt")
                elif dl.remaining() <= 0 and not isinstance(last, ProviderTimeout):
                    last.message += f" (gave up at the task deadline after {attempts} attempt(s))"
                raise give_up(last)

            index, wait = self._pick_key()
            if wait > 0:
                # Every key is cooling down: wait for the first, unless that is past the deadline.
                if wait >= dl.remaining():
                    raise give_up(
                        ProviderRateLimited(
                            f"every API key ({len(self.keys)}) is rate limited; the first cools down in "
                            f"{wait:.1f}s, after the task deadline ({dl.remaining():.1f}s left). Add keys "
                            f"(A §3.3) or raise the provider quota",
                            status=429,
                            key=last.key if last else None,
                        )
                    )
                time.sleep(wait)  # bounded by the deadline, checked above
                continue

            key = self.keys[index]
            attempts += 1
            try:
                resp = self._http.post(
                    "/v1/generate",
                    json={"model": model, "prompt": prompt},
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=self._timeout(dl),
                )
            except httpx.TimeoutException as exc:
                last = ProviderTimeout(
                    f"provider did not answer within the time left ({type(exc).__name__}); "
                    f"the task deadline bounds every request (AI_TASK_TIMEOUT, A §2.3)",
                    key=mask(key),
                )
                if isinstance(exc, httpx.ConnectTimeout):
                    last = ProviderUnavailable(f"connect to {self.base_url} timed out", key=mask(key))
            except httpx.TransportError as exc:
                last = ProviderUnavailable(
                    f"cannot reach the provider at {self.base_url}: {type(exc).__name__}: {exc}",
                    key=mask(key),
                )
            else:
                if resp.status_code == 200:
                    return resp.json()
                err = self._classify(resp, key, attempts, time.monotonic() - t0, model)
                if isinstance(err, ProviderRateLimited):
                    self._throttle(index, self._retry_after(resp))
                    last = err
                    if is_broken("provider_no_key_rotation"):
                        failures += 1
                        self._sleep_backoff(failures, dl)
                    continue  # next key at once
                if isinstance(err, ProviderUnauthorized) and storm:
                    last = err  # BUG: retry an invalid key in a tight loop until the deadline
                    continue
                if not isinstance(err, ProviderUnavailable):
                    raise give_up(err)  # 401, 404 model, other 4xx: retrying cannot help
                last = err
            failures += 1
            self._sleep_backoff(failures, dl)

    # -- helpers --
    def _timeout(self, dl: SupportsRemaining) -> httpx.Timeout:
        left = max(0.001, min(self.timeout, dl.remaining()))
        return httpx.Timeout(left, connect=min(left, self.policy.connect_timeout_s))

    def _sleep_backoff(self, failures: int, dl: SupportsRemaining) -> None:
        time.sleep(min(self._backoff(failures), dl.remaining()))

    def _retry_after(self, resp: httpx.Response) -> float:
        try:
            value = float(resp.headers.get("retry-after", ""))
        except ValueError:
            value = self.policy.backoff_base_s
        return max(0.0, min(value, self.policy.max_retry_after_s))

    def _classify(
        self, resp: httpx.Response, key: str, attempts: int, elapsed: float, model: str | None
    ) -> ProviderError:
        try:
            body = resp.json()
            detail = body.get("error", {}).get("message") or body.get("detail") or resp.text
        except ValueError:
            detail = resp.text[:200]
        fields = {"status": resp.status_code, "attempts": attempts, "elapsed": elapsed, "key": mask(key)}
        s = resp.status_code
        if s == 401:
            return ProviderUnauthorized(
                f"provider rejected API key {mask(key)}: {detail} (401). Check the configured AI "
                f"provider key(s) and restart the app and the AI worker (A §3.1)",
                **fields,
            )
        if s == 404 or "model not found" in str(detail).lower():
            return ModelNotFound(
                f"model {model!r}: {detail} (404). List the provider's models and sync the model "
                f"table (A §3.2)",
                model=model,
                **fields,
            )
        if s == 429:
            return ProviderRateLimited(f"rate limit exceeded on key {mask(key)}: {detail}", **fields)
        if s >= 500 or s in (408, 425):
            return ProviderUnavailable(f"provider error {s}: {detail}", **fields)
        return ProviderError("provider_bad_request", f"provider refused the request ({s}): {detail}", **fields)
