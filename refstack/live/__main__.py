"""``python -m refstack.live``: admin API on LIVE_HOST:LIVE_PORT, ingest on LIVE_INGEST_PORT,
relay on LIVE_RELAY_PORT, recordings under LIVE_DATA_DIR. See refstack.live.server."""

from __future__ import annotations

import os

import uvicorn

from refstack import broken
from refstack.live.server import Settings, create_app


def main() -> None:
    broken.active()  # an unknown REFSTACK_BROKEN name refuses to start
    settings = Settings.from_env()
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port,
        log_level=os.environ.get("LIVE_LOG_LEVEL", "warning"),
    )


if __name__ == "__main__":
    main()
