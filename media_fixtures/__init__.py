"""Generated, seeded media for the suite: valid clips and a corrupt corpus.

Nothing here is downloaded; everything is built with the local ffmpeg and cached
under a key derived from the recipes and the seed. See README.md.
"""

__all__ = ["Corpus", "MediaFixture", "corpus_key", "ensure_corpus", "valid_audio", "valid_clip"]


def __getattr__(name: str):
    # Lazy, so ``python -m media_fixtures.generate`` does not import the module twice.
    if name in __all__:
        from media_fixtures import generate

        return getattr(generate, name)
    raise AttributeError(name)
