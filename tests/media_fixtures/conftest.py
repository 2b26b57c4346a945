from __future__ import annotations

from pathlib import Path

import pytest

from media_fixtures import Corpus, ensure_corpus


@pytest.fixture(scope="session")
def corpus(request) -> Corpus:
    return ensure_corpus(Path(request.config.cache.mkdir("renderchaos-media")), seed=0)
