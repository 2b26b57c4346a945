"""The fake AI provider as a real ``python -m refstack.provider`` subprocess (thin fixtures in conftest)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from renderchaos.wait import Poll, wait_for

KEYS = ["key-alpha-0001", "key-bravo-0002", "key-charlie-0003"]
STARTUP_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProviderProcess:
    """The provider as a subprocess, with its control API. Works from a plain script too."""

    def __init__(self, log_dir: Path, keys: list[str] = KEYS) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys = keys
        env = {
            **os.environ,
            "PROVIDER_HOST": "127.0.0.1",
            "PROVIDER_PORT": str(self.port),
            "PROVIDER_VALID_KEYS": ",".join(keys),
        }
        env.pop("REFSTACK_BROKEN", None)  # the server is healthy; the bugs live in the client
        self.log_path = log_dir / f"provider-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "refstack.provider"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.control = httpx.Client(base_url=self.url, timeout=5.0)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"provider exited {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            return self.control.get("/health").status_code == 200

        wait_for(ready, "provider /health answers 200", STARTUP_TIMEOUT_S, Poll(0.05, (httpx.TransportError,)))

    def set(self, **behaviour: object) -> dict:
        resp = self.control.post("/_control", json=behaviour)
        assert resp.status_code == 200, f"control refused {behaviour}: {resp.status_code} {resp.text}"
        return resp.json()

    def stats(self) -> dict:
        return self.control.get("/_control/stats").json()

    def stop(self) -> None:
        self.control.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
