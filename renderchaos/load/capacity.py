"""Locust users for benchmarks/load_capacity.py, through the platform adapter: submit at a fixed
per-user rate (operation ``submit``), or ask for health as fast as possible (operation ``health``:
the load generator's own ceiling against the same server).

    RENDERCHAOS_PLATFORM='{"adapter": "refstack", "api_url": ..., "admin_token": ...}' \\
        locust -f renderchaos/load/capacity.py --headless --cap-mode submit --cap-rate 1 ...
"""

from __future__ import annotations

from typing import Any

from locust import User, constant, constant_throughput, events, task

from renderchaos.load import ops
from renderchaos.load.client import add_platform_options, fire, open_account, platform_spec
from renderchaos.platforms.base import RenderRequest

REQUEST = RenderRequest(title="capacity", duration=1.0, width=160, height=120)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--cap-mode", choices=("submit", "health"), default="submit")
    parser.add_argument("--cap-rate", type=float, default=1.0, help="submits per second per user")
    add_platform_options(parser)


class CapacityUser(User):
    def wait_time(self) -> float:
        opts = self.environment.parsed_options
        if opts.cap_mode == "health":
            return constant(0)(self)
        return constant_throughput(opts.cap_rate)(self)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.platform = platform_spec(opts, self.environment.host).build()
        if opts.cap_mode == "submit":
            self.account = open_account(self.platform, "capacity", 10_000_000)

    def on_stop(self) -> None:
        platform = getattr(self, "platform", None)
        if platform is not None:
            platform.close()

    @task
    def go(self) -> None:
        if self.environment.parsed_options.cap_mode == "health":
            h = self.platform.health()
            fire(self.environment, ops.HEALTH, h.elapsed, ops.healthy(h), len(h.detail))
        else:
            answer = self.platform.submit(self.account, REQUEST)
            fire(self.environment, ops.SUBMIT, answer.elapsed, ops.accepted(answer), ops.length(answer))
