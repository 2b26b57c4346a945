"""Thin adapter between the AI task / models endpoint and :mod:`refstack.provider.client` (A §3)."""

from __future__ import annotations

from typing import Any

from refstack.settings import Settings


def _client(settings: Settings, timeout: float):
    from refstack.provider.client import ProviderClient

    keys = list(settings.provider_keys) or ["missing-key"]  # the provider answers 401 -> provider_unauthorized
    return ProviderClient(settings.provider_url, keys, timeout=timeout)


def list_provider_models(settings: Settings, timeout: float = 3.0) -> list[dict[str, Any]]:
    """``[{"id", "available"}]`` as the provider reports it now (A §3.2: the list reflects unavailability)."""
    with _client(settings, timeout) as client:
        return [{"id": m.get("id"), "available": bool(m.get("available", True))}
                for m in client.list_models(deadline=timeout)]


def generate(settings: Settings, model: str, prompt: str, deadline: Any) -> dict[str, Any]:
    """One generation bounded by ``deadline`` (an object with ``remaining()``; AI_TASK_TIMEOUT, A §2.3).

    Raises the provider client's ``ProviderError`` subclasses, each with ``code``.
    """
    with _client(settings, timeout=settings.ai_task_timeout) as client:
        return client.generate(model, prompt, deadline=deadline)
