"""The reference stack's adapter: the worked example of a :class:`~renderchaos.platforms.base.Platform`.

This package is the only code of the harness that knows the reference stack's URLs
(render API, AI API, admin test hooks), its request bodies and its error envelopes.
"""

from renderchaos.platforms.refstack.adapter import RefstackPlatform

__all__ = ["RefstackPlatform"]
