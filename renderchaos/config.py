"""Profiles, named timeouts and target files.

A profile bundles a default marker selection, the named timeouts every wait uses and the
stack size. It is chosen with ``--chaos-profile`` and printed in the report header.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from renderchaos.errors import ConfigError

if TYPE_CHECKING:
    from renderchaos.wait import Wait


@dataclass(frozen=True)
class Timeouts:
    """Named waits (seconds): how long the harness polls. All of them scale with the profile and
    ``--chaos-timeout-factor``; runbook limits (:class:`renderchaos.wait.Limit`) never do."""

    connect: float = 5.0  # one HTTP call to the target
    stack_start: float = 90.0  # whole stack ready (warm images: ~10 s)
    job_completion: float = 90.0  # an accepted job reaches a terminal state
    detection: float = 20.0  # a fault's symptom becomes visible (scenarios without their own wait)
    recovery: float = 60.0  # steady state after the remedy

    def scaled(self, factor: float) -> "Timeouts":
        return Timeouts(*(getattr(self, f) * factor for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    markexpr: str  # applied when the user gave no -m
    timeouts: Timeouts = field(default_factory=Timeouts)
    workers: int = 2  # render workers per stack
    factor: float = 1.0  # --chaos-timeout-factor: scales every Wait (timeouts above are already scaled)

    def wait(self, w: "Wait | float") -> float:
        """Seconds to wait for ``w``: a :class:`~renderchaos.wait.Wait` scaled by the factor; a bare
        number is taken as already decided (e.g. one of ``timeouts``)."""
        from renderchaos.wait import Wait

        return w.scaled(self.factor) if isinstance(w, Wait) else float(w)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("gate", "fast CI gate: quick, non-destructive scenarios", "gate"),
        Profile("resilience", "pre-release run: slow and destructive scenarios too",
                "gate or resilience", Timeouts(job_completion=180.0, detection=40.0, recovery=120.0)),
        Profile("load", "Locust load test, alone and under faults", "load",
                Timeouts(job_completion=300.0, recovery=120.0)),
        Profile("all", "everything that can run against the target", "", Timeouts(job_completion=180.0)),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)} "
                          "with --chaos-profile") from None


# ---------------------------------------------------------------------------------------
# Target files: point the suite at an external deployment.



_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: str, where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in os.environ:
            raise ConfigError(f"{where} refers to ${{{m.group(1)}}} but that environment variable is unset; "
                              "export it or write the value into the target file")
        return os.environ[m.group(1)]

    return _ENV_REF.sub(sub, value)


def ensure_loopback(url: str, where: str, allow_remote: bool = False) -> None:
    """Refuse any target outside 127.0.0.0/8 (or ::1) unless explicitly allowed."""
    host = urlsplit(url).hostname
    if not host:
        raise ConfigError(f"{where}: {url!r} is not a URL with a host (expected e.g. http://127.0.0.1:8000)")
    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None)}
    except socket.gaierror as exc:
        raise ConfigError(f"{where}: cannot resolve {host!r}: {exc}") from exc
    remote = [a for a in addrs if not ipaddress.ip_address(a).is_loopback]
    if remote and not allow_remote:
        raise ConfigError(
            f"{where}: {url} resolves to {sorted(remote)}, which is not loopback. renderchaos sends "
            "fault and load traffic only to 127.0.0.0/8 unless you pass --chaos-allow-remote "
            "for a deployment you own (reach staging through an SSH tunnel on 127.0.0.1 instead).")


def with_timeouts(profile: Profile, factor: float) -> Profile:
    return replace(profile, timeouts=profile.timeouts.scaled(factor), factor=factor) if factor != 1.0 else profile
