"""Locust users for benchmarks/load_capacity.py: submit at a fixed per-user rate, or hit /health
as fast as possible (the load generator's own ceiling against the same server).

    locust -f renderchaos/load/capacity.py --headless --host URL --cap-mode submit --cap-rate 1 ...
"""

from __future__ import annotations

from typing import Any

import requests
from locust import HttpUser, constant, constant_throughput, events, task


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--cap-mode", choices=("submit", "health"), default="submit")
    parser.add_argument("--cap-rate", type=float, default=1.0, help="submits per second per user")
    parser.add_argument("--cap-admin-token", default="", env_var="RENDERCHAOS_ADMIN_TOKEN")


class CapacityUser(HttpUser):
    def wait_time(self) -> float:
        opts = self.environment.parsed_options
        if opts.cap_mode == "health":
            return constant(0)(self)
        return constant_throughput(opts.cap_rate)(self)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        if opts.cap_mode == "submit":
            r = requests.post(f"{self.host}/admin/users", json={"credits": 10_000_000, "name": "capacity"},
                              headers={"Authorization": f"Bearer {opts.cap_admin_token}"}, timeout=30)
            r.raise_for_status()
            self.client.headers["Authorization"] = f"Bearer {r.json()['api_key']}"

    @task
    def go(self) -> None:
        if self.environment.parsed_options.cap_mode == "health":
            self.client.get("/health", name="/health")
        else:
            self.client.post("/v1/videos", name="/v1/videos", json={
                "template_id": "template_capacity",
                "data": {"title": "capacity", "duration": 1.0, "width": 160, "height": 120,
                         "colours": ["#000000", "white"], "price": 1}})
