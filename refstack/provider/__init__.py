"""A stand-in for the external AI provider (runbook A §3) and the client the worker uses.

``server``  a small real HTTP service (``python -m refstack.provider``) whose behaviour
            the harness switches at run time through ``/_control``.
``client``  :class:`ProviderClient`, with key rotation, bounded backoff and a deadline.
"""

from refstack.provider.client import (
    ModelNotFound,
    ProviderClient,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnauthorized,
    ProviderUnavailable,
)

__all__ = [
    "ModelNotFound",
    "ProviderClient",
    "ProviderError",
    "ProviderRateLimited",
    "ProviderTimeout",
    "ProviderUnauthorized",
    "ProviderUnavailable",
]
