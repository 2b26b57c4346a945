"""The platform seam: what scenarios do to a render platform, in platform terms.

A :class:`Platform` adapter turns the suite's operations (open an account, submit a render, read
a job, cancel, list, download, health, metrics) into the calls of one real platform, and turns
its answers into the normalised types below. Scenarios, faults and probes speak only these
types; the adapter is the only code that knows the platform's URLs, bodies and error envelopes.

Core operations every adapter implements (abstract below). Optional groups an adapter declares
in :attr:`Platform.features` and implements as the methods documented with each
:class:`Feature`; a scenario that needs a group the adapter lacks is skipped naming it.

    Job states      pending -> running -> completed | failed | timeout | cancelled
    Error kinds     unauthorized, invalid_parameter, rate_limited, not_found,
                    insufficient_credits, dependency_unavailable, conflict, too_large,
                    server_error, other

See ``docs/your-platform.md`` for a walk-through of writing an adapter.
"""

from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generic, Mapping, TypeVar

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")


# ---------------------------------------------------------------------------------------
# jobs
class JobState(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED})
#: terminal states in which a charged job must have been refunded (credits group)
REFUNDED = frozenset({JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED})


@dataclass(frozen=True)
class Job:
    """A job as the platform reports it, normalised. ``raw`` keeps the platform's own record."""

    id: str
    state: JobState
    error_code: str | None = None
    error_message: str | None = None
    progress: float | None = None  # percent, 0..100
    attempts: int | None = None  # deliveries to a worker, when the platform counts them
    output: str | None = None  # where the output is (path or URL), when completed
    output_bytes: int | None = None  # its size, when the platform says
    encoder: str | None = None  # the encoder actually used, when the platform records it
    worker: str | None = None  # which worker (process) runs or ran it, when the platform says
    metrics: Mapping[str, Any] = field(default_factory=dict, compare=False)  # figures the platform
    #   reports about the render: segments, peak_rss_kb, tolerant_retry, cost...
    started_at: datetime | None = None
    finished_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def run_seconds(self) -> float | None:
        """From a worker picking it up to its terminal state, when both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def brief(self) -> str:
        pct = f" at {self.progress:g}%" if self.progress is not None else ""
        err = f" {self.error_code}" if self.error_code else ""
        m = self.error_message or ""
        msg = f": {m if len(m) <= 300 else m[:140] + ' ... ' + m[-160:]}" if m else ""  # errors end logs
        return f"{self.state}{err}{pct}{msg}"


# ---------------------------------------------------------------------------------------
# errors and answers
class ErrorKind(str, enum.Enum):
    UNAUTHORIZED = "unauthorized"
    INVALID_PARAMETER = "invalid_parameter"
    RATE_LIMITED = "rate_limited"
    NOT_FOUND = "not_found"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    DEPENDENCY_UNAVAILABLE = "dependency_unavailable"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    SERVER_ERROR = "server_error"
    OTHER = "other"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ApiError:
    """A refusal, normalised. ``code`` and ``message`` are the platform's own words."""

    kind: ErrorKind
    status: int
    code: str | None = None
    message: str = ""
    field: str | None = None  # invalid_parameter: which field
    retry_after: float | None = None  # rate_limited: seconds the platform asked us to wait
    dependency: str | None = None  # dependency_unavailable: the role ("database", "cache", ...)

    def __str__(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in (("field", self.field), ("retry_after", self.retry_after),
                                                   ("dependency", self.dependency)) if v is not None)
        return f"{self.status} {self.kind}{f' ({self.code})' if self.code else ''}{extra}: {self.message[:200]}"


@dataclass(frozen=True)
class Answer(Generic[T]):
    """The outcome of one platform call: a value, a normalised refusal, or no answer at all."""

    status: int | None  # None: no answer (connection refused, client timeout)
    elapsed: float
    value: T | None = None
    error: ApiError | None = None
    transport_error: str | None = None  # why there was no answer
    response: "httpx.Response | None" = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.error is None

    @property
    def kind(self) -> ErrorKind | None:
        return self.error.kind if self.error else None

    def unwrap(self, what: str) -> T:
        """The value, or a TargetError that says what was asked and what came back."""
        from renderchaos.errors import TargetError

        if not self.ok or self.value is None:
            raise TargetError(f"{what}: expected success, got {self}", status=self.status)
        return self.value

    def __str__(self) -> str:
        if self.status is None:
            return f"no answer ({self.transport_error}) in {self.elapsed:.2f}s"
        if self.error is not None:
            return f"{self.error} in {self.elapsed:.2f}s"
        return f"{self.status} in {self.elapsed:.2f}s"


# ---------------------------------------------------------------------------------------
# accounts, inputs, requests
@dataclass(frozen=True)
class Account:
    """A tenant (or the one fixed identity of a platform without accounts)."""

    id: str
    api_key: str | None = None  # the credential the platform's clients send
    credits: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Asset:
    """A media file the platform can read as an input, by reference (``ref``)."""

    ref: str  # what a render request names (a relative path, a URL, an upload id)
    host_path: Path | None = None  # where the harness can change it (remove, chmod), if it can


@dataclass(frozen=True)
class RenderRequest:
    """A small, valid render by default; ``input`` / ``audio`` render from given media."""

    title: str = "renderchaos"
    duration: float = 2.0
    width: int = 320
    height: int = 240
    input: Asset | None = None
    audio: Asset | None = None
    preset: str | None = None  # encoder speed/quality preset (x264: ultrafast ... veryslow)
    extra: Mapping[str, Any] = field(default_factory=dict)  # platform-specific fields

    @property
    def expected(self) -> tuple[float, int, int] | None:
        """What a valid output must measure (duration, width, height), when the platform
        renders to the request's size. Adapters that keep the input's size override this
        through :meth:`Platform.expected_output`."""
        return (float(self.duration), int(self.width), int(self.height))


@dataclass(frozen=True)
class Health:
    ok: bool
    status: int | None
    failing: tuple[str, ...] = ()  # roles the platform names as failing ("database", ...)
    elapsed: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class BadCredential:
    """One way a client gets its credentials wrong, and the words a helpful refusal uses."""

    name: str
    description: str
    headers: Mapping[str, str]
    names_it: Any  # re.Pattern: the refusal's message must match it (it says WHICH mistake)


@dataclass(frozen=True)
class InvalidRequest:
    """A request the platform must refuse as invalid_parameter naming ``field``."""

    name: str
    send: Callable[["httpx.Client"], "httpx.Response"]
    field: str | None  # None: the platform may not name one (malformed JSON, oversize body)
    kind: ErrorKind = ErrorKind.INVALID_PARAMETER


@dataclass(frozen=True)
class Endpoint:
    """One HTTP operation of the platform, for scenarios that are about HTTP itself
    (fuzzing, floods, injection): method, path (with ids filled in) and what it is."""

    method: str
    path: str
    what: str
    json: Any = None


# ---------------------------------------------------------------------------------------
class Feature(str, enum.Enum):
    """Optional groups of operations. An adapter lists those it implements in ``features``."""

    ACCOUNTS = "accounts"  # open_account creates isolated tenants (else one fixed identity)
    AUTH = "auth"  # bad_credentials, revoke_key, expired_token: the platform authenticates
    RATE_LIMITS = "rate_limits"  # per-tenant limits answered as rate_limited with retry_after
    CREDITS = "credits"  # balance, set_credits, job_charges: credits exactly once
    ASSETS = "assets"  # place_asset: inputs by reference, the harness can plant files
    DOWNLOAD = "download"  # download(account, job_id) returns the output bytes
    CANCEL = "cancel"  # cancel(account, job_id)
    METRICS = "metrics"  # metrics(): Prometheus text
    OPENAPI = "openapi"  # openapi(): the platform publishes an OpenAPI document
    JOB_VIEWS = "job_views"  # observe_job sees attempts and timestamps (admin/ledger views)
    STATS = "stats"  # job_counts(): jobs per state (queue depth)
    VALIDATION = "validation"  # invalid_requests(): requests to refuse naming the field
    AI_JOBS = "ai_jobs"  # the AI API of runbook A (see the refstack adapter)
    LIVE = "live"  # live ingest and recording (runbook V)
    ENVELOPES = "runbook_envelopes"  # error bodies follow the runbooks' envelopes (extra check)
    RENDER_LIMITS = "render_limits"  # the platform bounds a render's time (R §一.3) by config
    ENCODER_CONFIG = "encoder_config"  # the configured encoder can be absent (R §一.1 错误3)
    TEST_HOOKS = "test_hooks"  # reference-stack test hooks (hold DB connections, leak tasks)
    AUDIO_TRACKS = "audio_tracks"  # a render can take a separate audio track (RenderRequest.audio)


class Platform(ABC):
    """Base of every adapter. Subclasses set ``name`` and ``features`` and implement the core.

    An adapter is built from a :class:`PlatformEndpoint` (URLs and credentials from the
    target file or the started stack). It keeps its own HTTP clients; every call is bounded
    by ``timeout`` and never raises on an HTTP error: refusals come back as :class:`Answer`
    with an :class:`ApiError`, no answer as ``status=None``.
    """

    name: ClassVar[str] = ""
    features: ClassVar[frozenset[Feature]] = frozenset()
    #: the database schema this platform's tables follow, when the harness knows it (scenarios
    #: that read or write those tables directly need ``database:<schema>``); None for most
    schema: ClassVar[str | None] = None

    def __init__(self, endpoint: "PlatformEndpoint", timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout

    def has(self, *features: Feature | str) -> bool:
        return {Feature(f) for f in features} <= self.features

    def prepare(self) -> None:
        """One-time setup once the platform answers (install a plugin, create a worker pool...).
        Called by the harness before the first scenario; must be idempotent."""

    # -- core -------------------------------------------------------------------------------
    @abstractmethod
    def health(self) -> Health:
        """Is the platform up? ``failing`` names the dependencies it reports as down."""

    @abstractmethod
    def open_account(self, name: str = "renderchaos", credits: int | None = None) -> Account:
        """A tenant for one scenario (or the fixed identity, without the accounts feature)."""

    @abstractmethod
    def submit(self, account: Account, request: RenderRequest) -> Answer[str]:
        """Submit a render; the value is the job id."""

    @abstractmethod
    def job(self, account: Account, job_id: str) -> Answer[Job]:
        """The job as its owner sees it."""

    @abstractmethod
    def list_jobs(self, account: Account, limit: int = 20) -> Answer[list[Job]]:
        """The owner's most recent jobs."""

    @abstractmethod
    def observe_job(self, job_id: str) -> Job | None:
        """The harness's own view of any job (admin view or storage), ``None`` when the platform
        no longer knows the job (lost). Raises only when the platform cannot be asked."""

    # -- optional: defaults say "not supported" ----------------------------------------------
    def cancel(self, account: Account, job_id: str) -> Answer[None]:
        raise NotImplementedError(f"{self.name}: cancel (feature 'cancel')")

    def download(self, account: Account, job_id: str, timeout: float = 60.0) -> Answer[bytes]:
        raise NotImplementedError(f"{self.name}: download (feature 'download')")

    def expected_output(self, request: RenderRequest, job_id: str | None = None) -> tuple[float, int, int] | None:
        """What the output of ``request`` (accepted as ``job_id``) must measure (duration, width,
        height), or ``None`` when the platform promises no size (the output must still be valid)."""
        return request.expected

    def metrics(self) -> str | None:
        return None

    def openapi(self) -> dict[str, Any] | None:
        return None

    def place_asset(self, source: Path, name: str | None = None) -> Asset:
        raise NotImplementedError(f"{self.name}: place_asset (feature 'assets')")

    def remove_asset(self, asset: Asset) -> None:
        """Undo :meth:`place_asset` (idempotent)."""
        if asset.host_path is not None:
            asset.host_path.unlink(missing_ok=True)

    def missing_asset(self) -> Asset:
        """An input reference that names nothing (render.input_missing)."""
        raise NotImplementedError(f"{self.name}: missing_asset (feature 'assets')")

    def job_counts(self) -> dict[JobState, int] | None:
        """Jobs per state across the platform (queue depth), if it can say."""
        return None

    def worker_container(self, job: Job, workers: list[Any]) -> Any | None:
        """Which of ``workers`` (containers) runs ``job``, if the platform can say."""
        return None

    def fuzz_options(self, open_account: Callable[..., Account]) -> dict[str, Any]:
        """How api.fuzz drives :func:`renderchaos.probes.fuzz.fuzz` on this platform: ``base_url``,
        ``credentials`` (security scheme name -> token), ``base_bodies``, ``path_parameters``,
        ``exclude_tags`` / ``exclude_operations``. ``open_account(name, credits)`` opens a tenant."""
        return {"base_url": self.endpoint.api_url}

    def hold_workers(self) -> Any:
        """A fault that stops the workers from picking up jobs while the API keeps answering,
        through the platform itself (``None``: freeze the worker containers instead)."""
        return None

    def job_charges(self, job_id: str) -> tuple[int, int] | None:
        """(charges, refunds) recorded for a job (credits feature)."""
        return None

    def balance(self, account: Account) -> int | None:
        return None

    def ledger_total(self, account: Account) -> int | None:
        """What the balance must be according to the platform's own journal of charges and
        refunds (credits feature): the audit compares it with :meth:`balance`."""
        return None

    def bad_credentials(self, account: Account) -> list[BadCredential]:
        return []

    def invalid_requests(self, account: Account) -> list[InvalidRequest]:
        return []

    def endpoints(self, account: Account | None) -> list[Endpoint]:
        """The platform's HTTP operations (for floods, injection, fuzzing without a schema)."""
        return []

    def http(self, account: Account | None, **kwargs: Any) -> "httpx.Client":
        """An HTTP client for the platform's API, with ``account``'s credentials when given.
        The caller closes it. ``kwargs`` go to ``httpx.Client`` (timeout, transport...)."""
        raise NotImplementedError(f"{self.name}: http")

    def classify(self, resp: "httpx.Response") -> ApiError | None:
        """``None`` for a success; otherwise the refusal in normalised terms."""
        raise NotImplementedError(f"{self.name}: classify")

    def close(self) -> None:
        """Release clients. Idempotent."""


@dataclass(frozen=True)
class PlatformEndpoint:
    """Where a platform is and how the harness may act on it: built from a target file, a
    started compose stack or the reference stack. ``settings`` carries adapter-specific values
    (a target file's ``[platform]`` table, a compose file's ``x-renderchaos.platform``)."""

    api_url: str
    admin_token: str | None = None
    urls: Mapping[str, str] = field(default_factory=dict)  # other URLs by name ("live", "provider")
    host_dirs: Mapping[str, Path] = field(default_factory=dict)  # host paths by name ("assets", "library")
    settings: Mapping[str, Any] = field(default_factory=dict)


def timed(call: Callable[[], "httpx.Response"], classify: Callable[["httpx.Response"], ApiError | None],
          parse: Callable[["httpx.Response"], T] | None = None) -> Answer[T]:
    """Run one HTTP call and normalise its outcome: a value, a refusal, or no answer."""
    import httpx

    t0 = time.monotonic()
    try:
        resp = call()
    except httpx.HTTPError as exc:
        return Answer(status=None, elapsed=time.monotonic() - t0, transport_error=f"{type(exc).__name__}: {exc}")
    elapsed = time.monotonic() - t0
    error = classify(resp)
    if error is not None:
        return Answer(status=resp.status_code, elapsed=elapsed, error=error, response=resp)
    value = None
    if parse is not None:
        try:
            value = parse(resp)
        except (ValueError, KeyError, TypeError) as exc:
            err = ApiError(ErrorKind.OTHER, resp.status_code, None,
                           f"answer not understood ({type(exc).__name__}: {exc}): {resp.text[:200]}")
            return Answer(status=resp.status_code, elapsed=elapsed, error=err, response=resp)
    return Answer(status=resp.status_code, elapsed=elapsed, value=value, response=resp)
