"""``python -m refstack.provider``: serve the fake AI provider on PROVIDER_HOST:PROVIDER_PORT."""

from __future__ import annotations

import os

import uvicorn

from refstack import broken
from refstack.provider.server import create_app


def main() -> None:
    broken.active()  # an unknown REFSTACK_BROKEN name refuses to start
    host = os.environ.get("PROVIDER_HOST", "127.0.0.1")
    port = int(os.environ.get("PROVIDER_PORT", "8090"))
    uvicorn.run(create_app(), host=host, port=port, log_level=os.environ.get("PROVIDER_LOG_LEVEL", "warning"))


if __name__ == "__main__":
    main()
