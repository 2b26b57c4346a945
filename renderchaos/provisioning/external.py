"""Containers of a running deployment that the target file allows the harness to touch.

Only for ``disposable = true`` targets, and only the containers named under ``[containers]``
(the blast radius). They are found by name on the engine ``DOCKER_HOST`` points at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from renderchaos.errors import ProvisioningError
from renderchaos.wait import Deadline, Poll, wait_for


@dataclass
class NamedContainer:
    """A container of someone else's deployment, by name. Readiness = running."""

    container_name: str
    role: str
    _client: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.container_name

    @property
    def container(self) -> Any:
        import docker

        from renderchaos.provisioning.engine.engine import DOCKER_API_VERSION

        try:
            if self._client is None:
                self._client = docker.from_env(version=DOCKER_API_VERSION)
            return self._client.containers.get(self.container_name)
        except Exception as exc:  # docker.errors.NotFound, DockerException
            raise ProvisioningError(
                f"container {self.container_name!r} (role {self.role}) listed in the target file's [containers] "
                f"was not found on the engine DOCKER_HOST points at: {exc}. Check the name with `docker ps`",
                service=self.container_name) from exc

    def state(self) -> dict[str, Any]:
        c = self.container
        return c.attrs.get("State", {})

    def logs(self, tail: int = 40) -> str:
        try:
            return self.container.logs(tail=tail).decode(errors="replace")
        except Exception as exc:  # noqa: BLE001
            return f"(logs unavailable: {exc})"

    def wait_ready(self, deadline: Deadline) -> None:
        wait_for(lambda: self.state().get("Running"), what=f"{self.container_name} to be running",
                 timeout=deadline, poll=Poll(0.2))
