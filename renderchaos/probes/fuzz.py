"""Schema-driven fuzzing of an HTTP API with Schemathesis: the engine behind ``api.fuzz``.

Everything it sends comes from the target's own OpenAPI document (a URL or a loaded dict):
operations, parameters, bodies, security schemes, documented status codes and response
schemas. It never names an endpoint of any particular platform.

Three phases, all bounded, all seeded:

1. **explicit cases** (deterministic, so a gate never misses them by luck): for every operation
   with a JSON body, malformed JSON bodies; for every field of the body (nested objects too) the
   field left out, ``null``, a lone UTF-16 surrogate (strings), huge and negative integers (numbers), over-long
   strings (NAME_MAX + 1, the declared ``maxLength`` + 1, 4 KiB); for every query parameter
   over-long and out-of-range values. Each case starts from a minimal valid body (drawn from
   the schema with the seed, or given by the caller), changed in one place.
2. **generated cases**: Schemathesis's positive and negative data for each operation, up to
   ``max_examples`` per operation, through its Hypothesis integration (``as_strategy``).
3. **stateful** (optional): sequences that follow the schema's OpenAPI links
   (``schema.as_state_machine()``), e.g. create a job, then read and cancel it.

Every response runs the Schemathesis checks named in ``checks`` (by default 5xx,
status-code, content-type and response-schema conformance) plus :func:`stack_trace_in_body`.
A failure is a :class:`Finding` with a curl command of the request as sent. The caller
supplies credentials per security scheme of the schema; a 429 is waited out (Retry-After)
so that rate limiting never answers instead of the code under test.

    result = fuzz("http://127.0.0.1:8000/openapi.json", credentials={"apiKey": key}, seed=42)
    assert not result.findings, result.summary()
"""

from __future__ import annotations

import copy
import json
import random
import shlex
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import urljoin, urlsplit

import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.errors import FailureGroup

from renderchaos.errors import ConfigError, TargetError, WaitTimeout
from renderchaos.faults.api import looks_like_stack_trace
from renderchaos.wait import Poll, wait_for

#: Schemathesis checks run on every response unless the caller names others
DEFAULT_CHECKS: tuple[str, ...] = (
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
)
#: our own check, always run: a Python/Java/SQL stack trace in a response body
STACK_TRACE_CHECK = "stack_trace_in_body"
#: a request that got no HTTP answer (connection refused or reset, timeout)
NO_RESPONSE_CHECK = "no_response"

LONE_SURROGATE = "\ud800"
#: longest file-name component on Linux; one more byte is a classic unchecked 500 (ENAMETOOLONG)
NAME_MAX = 255
HUGE_INTEGERS = (-1, 2**31, 2**53 + 1, 10**12, 10**18, 2**63, 10**30)
HUGE_NUMBERS = (-1e308, 1e308)
MALFORMED_JSON: tuple[tuple[str, bytes], ...] = (
    ("truncated object", b'{"'),
    ("unterminated object", b"{"),
    ("bare word", b"not json"),
    ("trailing comma", b'{"a": 1,}'),
    ("missing value", b'{"a": }'),
    ("invalid UTF-8", b'{"a": "\xff\xfe"}'),
)
EXCERPT = 500


# ---------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class Finding:
    """One failed check on one response."""

    operation: str  # "POST /renders": the schema's method and path
    check: str  # "not_a_server_error", "response_schema_conformance", "stack_trace_in_body", ...
    status: int | None  # None: no HTTP answer
    message: str  # what the check saw (Schemathesis's failure message)
    curl: str  # the request as sent
    body_excerpt: str  # the first EXCERPT characters of the answer
    source: str  # "explicit:<case>", "generated:positive", "generated:negative", "stateful"

    def describe(self) -> str:
        return (f"{self.operation} [{self.source}] {self.check}: HTTP {self.status}: "
                f"{self.message.strip().splitlines()[0] if self.message.strip() else ''}\n"
                f"    {self.curl}\n    -> {self.body_excerpt[:200]!r}")


@dataclass
class FuzzResult:
    """What one fuzz run sent, what came back, and every failed check."""

    seed: int
    max_examples: int
    operations: list[str]
    findings: list[Finding] = field(default_factory=list)
    requests: int = 0
    explicit_cases: int = 0
    per_operation: Counter = field(default_factory=Counter)  # requests per operation label
    per_operation_statuses: dict[str, Counter] = field(default_factory=dict)  # label -> status -> count
    statuses: Counter = field(default_factory=Counter)  # HTTP status -> count
    rate_limited_waits: int = 0  # 429s waited out
    out_of_time: bool = False  # the time budget ended generation early
    not_generated: list[str] = field(default_factory=list)  # what could not be generated, and why
    elapsed_s: float = 0.0

    @property
    def server_errors(self) -> list[Finding]:
        """Findings with a 5xx answer or no answer at all."""
        return [f for f in self.findings if f.status is None or f.status >= 500]

    def by_check(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def summary(self, limit: int = 10) -> str:
        head = (f"{self.requests} requests ({self.explicit_cases} explicit) to {len(self.operations)} operations "
                f"in {self.elapsed_s:.1f}s, seed {self.seed}, max {self.max_examples} examples per operation; "
                f"statuses {dict(sorted(self.statuses.items()))}; {len(self.findings)} findings "
                f"({len(self.server_errors)} 5xx / no answer)"
                + ("; time budget ran out" if self.out_of_time else ""))
        distinct: dict[tuple[str, str, int | None], Finding] = {}
        for f in self.findings:
            distinct.setdefault((f.operation, f.check, f.status), f)
        lines = [head] + [f.describe() for f in list(distinct.values())[:limit]]
        if len(distinct) > limit:
            lines.append(f"... and {len(distinct) - limit} more distinct (operation, check, status)")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# checks


def stack_trace_in_body(ctx: Any, response: Any, case: Any) -> None:
    """Schemathesis check: the body carries a stack trace (debug mode left on)."""
    text = response.content.decode("utf-8", "replace") if response.content else ""
    if looks_like_stack_trace(text):
        raise AssertionError("the response body carries a stack trace: an error page leaks the code's internals")


def _check_functions(names: Sequence[str]) -> list[Callable]:
    out = []
    for name in names:
        if name == STACK_TRACE_CHECK:
            continue
        try:
            out.append(getattr(schemathesis.checks, name))
        except AttributeError:
            raise ConfigError(f"unknown Schemathesis check {name!r}; expected a check of schemathesis.checks "
                              f"such as {', '.join(DEFAULT_CHECKS)}, negative_data_rejection, "
                              "response_headers_conformance") from None
    return out + [stack_trace_in_body]


# ---------------------------------------------------------------------------------------
# schema helpers (plain JSON Schema walking over the raw document)


class _Raw:
    """The raw OpenAPI document: local $ref resolution and per-operation lookups."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.ops: dict[str, dict[str, Any]] = {}
        for path, item in (raw.get("paths") or {}).items():
            for method, op in item.items():
                if isinstance(op, dict) and method.lower() in ("get", "put", "post", "delete", "patch", "head",
                                                                "options", "trace"):
                    self.ops[f"{method.upper()} {path}"] = op

    def resolve(self, node: Any, depth: int = 0) -> Any:
        while isinstance(node, dict) and "$ref" in node and depth < 32:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                return {}
            target: Any = self.raw
            for part in ref[2:].split("/"):
                target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
            node, depth = target, depth + 1
        return node

    def security_headers(self, label: str, credentials: Mapping[str, str]) -> dict[str, str]:
        """Headers that satisfy the operation's security requirement with the caller's credentials."""
        op = self.ops.get(label, {})
        requirements = op.get("security", self.raw.get("security", []))
        schemes = (self.raw.get("components") or {}).get("securitySchemes") or {}
        for requirement in requirements or []:
            headers: dict[str, str] = {}
            for name in requirement:
                scheme = self.resolve(schemes.get(name, {}))
                token = credentials.get(name)
                if token is None:
                    break
                if scheme.get("type") == "http" and scheme.get("scheme", "").lower() == "bearer":
                    headers["Authorization"] = f"Bearer {token}"
                elif scheme.get("type") == "http" and scheme.get("scheme", "").lower() == "basic":
                    headers["Authorization"] = f"Basic {token}"
                elif scheme.get("type") == "apiKey" and scheme.get("in") == "header":
                    headers[scheme["name"]] = token
                else:
                    break
            else:
                return headers
        return {}

    def json_body_schema(self, label: str) -> dict[str, Any] | None:
        body = self.resolve(self.ops.get(label, {}).get("requestBody"))
        if not isinstance(body, dict):
            return None
        for media, content in (body.get("content") or {}).items():
            if media.split(";")[0].strip().lower() == "application/json" or media.endswith("+json"):
                return self.resolve((content or {}).get("schema", {}))
        return None

    def query_parameters(self, label: str) -> list[dict[str, Any]]:
        op = self.ops.get(label, {})
        path_item = (self.raw.get("paths") or {}).get(label.split(" ", 1)[1], {})
        params = [self.resolve(p) for p in list(path_item.get("parameters", [])) + list(op.get("parameters", []))]
        return [p for p in params if isinstance(p, dict) and p.get("in") == "query"]

    def types(self, schema: Any, depth: int = 0) -> set[str]:
        """Every JSON type ``schema`` admits (through $ref, allOf, anyOf, oneOf, enum, const)."""
        schema = self.resolve(schema)
        if not isinstance(schema, dict) or depth > 8:
            return set()
        out: set[str] = set()
        t = schema.get("type")
        if isinstance(t, str):
            out.add(t)
        elif isinstance(t, list):
            out.update(x for x in t if isinstance(x, str))
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in schema.get(key, []) or []:
                out |= self.types(sub, depth + 1)
        for value in list(schema.get("enum", []) or []) + ([schema["const"]] if "const" in schema else []):
            out.add(_json_type(value))
        if not out and "properties" in schema:
            out.add("object")
        return out

    def properties(self, schema: Any, depth: int = 0) -> dict[str, Any]:
        """The declared properties of an object schema (merged through allOf / anyOf / oneOf)."""
        schema = self.resolve(schema)
        if not isinstance(schema, dict) or depth > 8:
            return {}
        out = dict(schema.get("properties") or {})
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in schema.get(key, []) or []:
                for name, prop in self.properties(sub, depth + 1).items():
                    out.setdefault(name, prop)
        return out

    def max_length(self, schema: Any) -> int | None:
        schema = self.resolve(schema)
        found = [schema.get("maxLength")] if isinstance(schema, dict) else []
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in (schema.get(key, []) if isinstance(schema, dict) else []) or []:
                found.append(self.max_length(sub))
        values = [v for v in found if isinstance(v, int)]
        return max(values) if values else None

    def fields(self, schema: Any, prefix: tuple[str, ...] = (), depth: int = 0) -> Iterator[tuple[tuple[str, ...], Any]]:
        """(path, schema) of every property of a body, nested objects included (depth 3)."""
        if depth > 3:
            return
        for name, prop in self.properties(schema).items():
            path = prefix + (name,)
            yield path, prop
            if "object" in self.types(prop):
                yield from self.fields(prop, path, depth + 1)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _set_path(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node = out
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value
    return out


def _without_path(body: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """``body`` with the field at ``path`` removed (its parent objects kept, created if absent)."""
    out = copy.deepcopy(body)
    node = out
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node.pop(path[-1], None)
    return out


def _curl(prepared: requests.PreparedRequest | None) -> str:
    """The request as a bash command line; a body that is not printable UTF-8 goes through printf."""
    if prepared is None:
        return ""
    parts = ["curl", "-X", prepared.method or "GET"]
    for name, value in prepared.headers.items():
        if name.lower() in ("user-agent", "accept-encoding", "connection", "content-length"):
            continue
        parts += ["-H", f"{name}: {value}"]
    command = " ".join(shlex.quote(p) for p in parts)
    body = prepared.body
    if body:
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and text.isprintable():
            command += " --data-binary " + shlex.quote(text)
        else:  # NUL, control characters or not UTF-8 (on purpose): byte by byte
            escaped = "".join(chr(b) if 0x20 <= b < 0x7f and chr(b) not in "\\%'" else f"\\x{b:02x}" for b in body)
            command += " --data-binary @<(printf '%b' " + shlex.quote(escaped) + ")"
    return command + " " + shlex.quote(prepared.url or "")


# ---------------------------------------------------------------------------------------
# the engine


@dataclass(frozen=True)
class _Explicit:
    name: str
    body: Any = None  # the JSON value to send (serialised here, surrogates escaped)
    raw: bytes | None = None  # exact bytes (malformed JSON)
    query: Mapping[str, Any] | None = None


class FuzzEngine:
    """One fuzz run against one schema. :func:`fuzz` is the one-call form."""

    def __init__(self, schema: str | Mapping[str, Any], *, base_url: str | None = None,
                 credentials: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
                 seed: int = 0, max_examples: int = 200, modes: Sequence[str] = ("positive", "negative"),
                 explicit: bool = True, stateful_examples: int = 0,
                 include_tags: Sequence[str] = (), exclude_tags: Sequence[str] = (),
                 exclude_operations: Sequence[str] = (), checks: Sequence[str] = DEFAULT_CHECKS,
                 base_bodies: Mapping[str, Any] | None = None, time_budget: float = 300.0,
                 request_timeout: float = 10.0, rate_limit_wait: float = 30.0,
                 schema_headers: Mapping[str, str] | None = None,
                 path_parameters: Mapping[str, Any] | None = None) -> None:
        if max_examples < 1:
            raise ConfigError(f"max_examples={max_examples}: expected at least 1")
        bad_modes = set(modes) - {"positive", "negative"}
        if bad_modes:
            raise ConfigError(f"unknown generation modes {sorted(bad_modes)}; expected positive and/or negative")
        self.config = schemathesis.Config()  # explicit: no schemathesis.toml discovered from the cwd
        self.config.update(seed=seed, max_failures=None)
        try:
            if isinstance(schema, str):
                loaded = schemathesis.openapi.from_url(schema, config=self.config, timeout=request_timeout,
                                                       headers=dict(schema_headers or {}))
                default_base = _base_from_url(schema, loaded.raw_schema)
            else:
                loaded = schemathesis.openapi.from_dict(dict(schema), config=self.config)
                default_base = None
        except schemathesis.errors.SchemathesisError as exc:
            raise TargetError(f"could not load the OpenAPI schema from {schema if isinstance(schema, str) else 'dict'}: "
                              f"{exc}; expected an OpenAPI 3 document: check the URL and that the API is up") from exc
        except requests.RequestException as exc:
            raise TargetError(f"could not fetch the OpenAPI schema at {schema}: {exc}; expected the API to "
                              "answer: check the URL and that the API is up") from exc
        if include_tags:
            loaded = loaded.include(tag=list(include_tags))
        if exclude_tags:
            loaded = loaded.exclude(tag=list(exclude_tags))
        if exclude_operations:
            names = list(exclude_operations)
            loaded = loaded.exclude(name=names).exclude(operation_id=names)
        self.schema = loaded
        self.raw = _Raw(loaded.raw_schema)
        self.base_url = (base_url or default_base or "").rstrip("/")
        if not self.base_url:
            raise ConfigError("no base_url: pass the API's base URL when the schema is given as a dict")
        self.credentials = dict(credentials or {})
        self.headers = dict(headers or {})
        self.seed = seed
        self.max_examples = max_examples
        self.modes = tuple(modes)
        self.explicit = explicit
        self.stateful_examples = stateful_examples
        self.checks = _check_functions(checks)
        self.base_bodies = dict(base_bodies or {})
        self.path_parameters = dict(path_parameters or {})
        self.time_budget = time_budget
        self.request_timeout = request_timeout
        self.rate_limit_wait = rate_limit_wait
        self.operations = [r.ok() for r in loaded.get_all_operations() if _is_ok(r)]
        self.errors = [r for r in loaded.get_all_operations() if not _is_ok(r)]
        self.session = requests.Session()
        self.result = FuzzResult(seed=seed, max_examples=max_examples,
                                 operations=[op.label for op in self.operations])
        self._deadline = 0.0

    # -------------------------------------------------------------------- running
    def run(self) -> FuzzResult:
        if self.errors:
            raise TargetError(f"the OpenAPI schema has operations Schemathesis cannot use: "
                              f"{[str(e.err()) for e in self.errors][:3]}; expected a valid schema: fix it")
        t0 = time.monotonic()
        self._deadline = t0 + self.time_budget
        try:
            if self.explicit:
                for op in self.operations:
                    self._explicit_cases(op)
            for op in self.operations:
                for mode in self.modes:
                    self._generated(op, mode)
            if self.stateful_examples > 0 and not self._out_of_time():
                self._stateful()
        finally:
            self.session.close()
            self.result.elapsed_s = round(time.monotonic() - t0, 2)
        return self.result

    def _out_of_time(self) -> bool:
        if time.monotonic() >= self._deadline:
            self.result.out_of_time = True
            return True
        return False

    def _auth(self, op: Any) -> dict[str, str]:
        return {**self.headers, **self.raw.security_headers(op.label, self.credentials)}

    def _send(self, case: Any, source: str, **kwargs: Any) -> None:
        """Send ``case`` (waiting out 429s), run every check, record findings."""
        op = case.operation
        headers = self._auth(op)
        last: list[Any] = []

        def answered() -> tuple[Any] | None:
            response = case.call(base_url=self.base_url, session=self.session, headers=headers,
                                 timeout=self.request_timeout, **kwargs)
            self._count(op.label, response.status_code)
            last[:] = [response]
            if response.status_code == 429:  # rate limited: the code under test did not answer yet
                self.result.rate_limited_waits += 1
                return None
            return (response,)

        try:
            wait_for(answered, f"{op.label} answered without 429", self.rate_limit_wait,
                     Poll(interval=1.0, tolerate=()))
        except WaitTimeout:
            pass  # still 429 after rate_limit_wait: the 429 itself is checked below
        except requests.RequestException as exc:
            self._count(op.label, None)
            self.result.findings.append(Finding(
                op.label, NO_RESPONSE_CHECK, None, f"{type(exc).__name__}: {exc}",
                _curl(getattr(exc, "request", None)), "", source))
            return
        response = last[0]
        self._validate(case, response, source, headers)

    def _count(self, label: str, status: int | None) -> None:
        self.result.requests += 1
        self.result.per_operation[label] += 1
        if status is not None:
            self.result.statuses[status] += 1
            self.result.per_operation_statuses.setdefault(label, Counter())[status] += 1

    def _validate(self, case: Any, response: Any, source: str, headers: Mapping[str, str]) -> None:
        for check in self.checks:
            try:
                case.validate_response(response, checks=[check], headers=dict(headers),
                                       transport_kwargs={"base_url": self.base_url})
            except FailureGroup as group:
                for failure in group.exceptions:
                    self.result.findings.append(self._finding(case, response, check.__name__,
                                                              failure.title or "", failure.message, source))
            except AssertionError as exc:  # a check outside Schemathesis's failure types
                self.result.findings.append(self._finding(case, response, check.__name__, "", str(exc), source))

    def _finding(self, case: Any, response: Any, check: str, title: str, message: str, source: str) -> Finding:
        text = response.content.decode("utf-8", "replace") if response.content else ""
        return Finding(case.operation.label, check, response.status_code,
                       (title + ("\n" if title and message else "") + message).strip(),
                       _curl(response.request), text[:EXCERPT], source)

    # -------------------------------------------------------------------- generated
    def _settings(self, max_examples: int) -> Any:
        from hypothesis import HealthCheck, Phase, settings

        return settings(max_examples=max_examples, database=None, deadline=None, derandomize=False,
                        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                        print_blob=False, report_multiple_bugs=False)

    def _generated(self, op: Any, mode: str) -> None:
        from hypothesis import given, seed
        from hypothesis.errors import Unsatisfiable

        share = self.max_examples // len(self.modes) + (1 if mode == self.modes[0] and
                                                        self.max_examples % len(self.modes) else 0)
        if share < 1 or self._out_of_time():
            return
        strategy = op.as_strategy(generation_mode=GenerationMode(mode))
        source = f"generated:{mode}"

        @seed(self.seed)
        @self._settings(share)
        @given(case=strategy)
        def run(case: Any) -> None:
            if time.monotonic() >= self._deadline:
                self.result.out_of_time = True
                return
            self._send(case, source)

        try:
            run()
        except Unsatisfiable:  # e.g. no negative value exists for an unconstrained string
            self.result.not_generated.append(f"{op.label} {mode}: the schema admits no such data")

    # -------------------------------------------------------------------- explicit
    def _base_case(self, op: Any) -> Any:
        """A minimal valid case of ``op`` (Hypothesis's simplest positive example, seeded)."""
        from hypothesis import find
        from hypothesis.errors import NoSuchExample, Unsatisfiable

        try:
            return find(op.as_strategy(generation_mode=GenerationMode.POSITIVE), lambda _: True,
                        settings=self._settings(50), random=random.Random(self.seed))
        except (NoSuchExample, Unsatisfiable):
            return None

    def _explicit_cases(self, op: Any) -> None:
        base = self._base_case(op)
        if base is None:
            return
        body_schema = self.raw.json_body_schema(op.label)
        op_id = self.raw.ops.get(op.label, {}).get("operationId", "")
        given_body = self.base_bodies.get(op.label, self.base_bodies.get(op_id))
        base_body = copy.deepcopy(given_body) if given_body is not None else (
            copy.deepcopy(base.body) if isinstance(base.body, dict) else {})
        cases: list[_Explicit] = []
        if body_schema is not None:
            cases += [_Explicit(f"malformed JSON: {name}", raw=raw) for name, raw in MALFORMED_JSON]
            cases += list(self._field_cases(body_schema, base_body))
        for param in self.raw.query_parameters(op.label):
            cases += list(self._query_cases(param))
        for case_spec in cases:
            if self._out_of_time():
                return
            self.result.explicit_cases += 1
            kwargs: dict[str, Any] = {}
            path = {name: self.path_parameters.get(name, value) for name, value in (base.path_parameters or {}).items()}
            case = op.Case(path_parameters=path,
                           query={**(base.query or {}), **(case_spec.query or {})},
                           body=base_body if body_schema is not None else base.body,
                           media_type="application/json" if body_schema is not None else base.media_type)
            if case_spec.raw is not None:
                kwargs["data"] = case_spec.raw
            elif body_schema is not None:
                kwargs["data"] = json.dumps(case_spec.body if case_spec.query is None else base_body).encode()
            self._send(case, f"explicit:{case_spec.name}", **kwargs)

    def _field_cases(self, body_schema: Any, base_body: dict[str, Any]) -> Iterator[_Explicit]:
        for path, prop in self.raw.fields(body_schema):
            name = ".".join(path)
            types = self.raw.types(prop)
            yield _Explicit(f"without {name}", _without_path(base_body, path))
            yield _Explicit(f"{name}: null", _set_path(base_body, path, None))
            if "string" in types or not types:
                yield _Explicit(f"{name}: lone surrogate", _set_path(base_body, path, f"a{LONE_SURROGATE}b"))
                lengths = {NAME_MAX + 1, 4096}
                declared = self.raw.max_length(prop)
                if declared is not None and declared < 100_000:
                    lengths.add(declared + 1)
                for n in sorted(lengths):
                    yield _Explicit(f"{name}: {n} characters", _set_path(base_body, path, "a" * n))
            if "integer" in types or "number" in types:
                for value in HUGE_INTEGERS:
                    yield _Explicit(f"{name}: {value}", _set_path(base_body, path, value))
            if "number" in types:
                for value in HUGE_NUMBERS:
                    yield _Explicit(f"{name}: {value:g}", _set_path(base_body, path, value))
            if "array" in types:
                yield _Explicit(f"{name}: [lone surrogate]", _set_path(base_body, path, [LONE_SURROGATE]))

    def _query_cases(self, param: dict[str, Any]) -> Iterator[_Explicit]:
        name = param.get("name", "")
        types = self.raw.types(param.get("schema", {}))
        for value in ("", "a" * (NAME_MAX + 1), "a" * 4096):
            yield _Explicit(f"query {name}: {len(value)} characters", query={name: value})
        if "integer" in types or "number" in types:
            for value in ("-1", str(2**63), str(10**30), "1e308", "NaN"):
                yield _Explicit(f"query {name}: {value}", query={name: value})

    # -------------------------------------------------------------------- stateful
    def _stateful(self) -> None:
        from hypothesis import HealthCheck, Phase, settings
        from hypothesis import seed as hypothesis_seed
        from hypothesis.errors import Flaky

        engine = self
        base = self.schema.as_state_machine()

        class Machine(base):  # type: ignore[misc, valid-type]
            def step(self, input: Any) -> Any:  # noqa: A002 - Schemathesis's name
                if time.monotonic() >= engine._deadline:
                    engine.result.out_of_time = True
                return super().step(input)

            def get_call_kwargs(self, case: Any) -> dict[str, Any]:
                return {"base_url": engine.base_url, "session": engine.session, "headers": engine._auth(case.operation),
                        "timeout": engine.request_timeout}

            def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
                engine._count(case.operation.label, response.status_code)
                engine._validate(case, response, "stateful", kwargs.get("headers") or {})

        seeded = hypothesis_seed(self.seed)(Machine)
        try:
            seeded.run(settings=settings(max_examples=self.stateful_examples, stateful_step_count=6, database=None,
                                         deadline=None, phases=[Phase.generate],
                                         suppress_health_check=list(HealthCheck)))
        except schemathesis.errors.NoLinksFound:
            self.result.not_generated.append("stateful: the schema has no links")
        except Flaky:
            # Answers steer which links can be followed, so a replayed scenario may draw differently;
            # Schemathesis's own runner ends the phase there too. What ran was checked.
            self.result.not_generated.append("stateful: ended early (answers changed the links' data)")


def _is_ok(result: Any) -> bool:
    try:
        result.ok()
        return True
    except Exception:  # noqa: BLE001 - an Err result
        return False


def _base_from_url(url: str, raw: Mapping[str, Any]) -> str:
    """The API base: the schema's first server (relative to the schema's URL) or the schema's origin."""
    servers = raw.get("servers") or []
    if servers and isinstance(servers[0], dict) and servers[0].get("url"):
        return urljoin(url, servers[0]["url"])
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def fuzz(schema: str | Mapping[str, Any], **options: Any) -> FuzzResult:
    """Fuzz the API that ``schema`` (an OpenAPI URL or dict) describes; see :class:`FuzzEngine`.

    Options: ``base_url`` (required with a dict), ``credentials`` (security scheme name ->
    token/key), ``headers`` (sent with every request), ``seed``, ``max_examples`` (per
    operation, split over ``modes``), ``modes`` (``positive``, ``negative``), ``explicit``
    (the deterministic cases), ``stateful_examples`` (0: no link-following phase),
    ``include_tags`` / ``exclude_tags`` / ``exclude_operations`` (labels or operationIds),
    ``checks`` (Schemathesis check names; the stack-trace check always runs), ``base_bodies``
    (operation label or operationId -> a valid JSON body the explicit cases start from),
    ``path_parameters`` (name -> value for the explicit cases, e.g. an id that exists, so the
    cases reach the code behind the existence check; generated cases keep random values),
    ``time_budget`` (s, whole run), ``request_timeout`` (s), ``rate_limit_wait`` (s, per request).
    """
    return FuzzEngine(schema, **options).run()
