"""Pick and assemble the LLM backend from settings; the only place that knows every backend.

Backend modules are imported inside :func:`make_backend`, so choosing the HTTP backend never imports the
embedded model's code and vice versa.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from clinreason.llm.base import LLMBackend, LLMError
from clinreason.llm.resilience import CircuitBreaker, ResilientBackend

BackendKind = Literal["auto", "openai", "local", "fake"]
_KINDS = ("auto", "openai", "local", "fake")
_FIELDS = ("backend", "base_url", "model", "api_key", "timeout", "concurrency", "prices", "max_attempts",
           "outage_patience")


def _from_settings(settings: Any) -> dict[str, Any]:
    """Read the fields we know from a settings object or mapping, named plainly or with an ``llm_`` prefix."""
    found: dict[str, Any] = {}
    for name in _FIELDS:
        for key in (name, f"llm_{name}"):
            value = settings.get(key) if isinstance(settings, Mapping) else getattr(settings, key, None)
            if value is not None:
                found[name] = value.get_secret_value() if hasattr(value, "get_secret_value") else value
                break
    return found


def make_backend(settings: Any = None, *, backend: BackendKind | None = None, base_url: str | None = None,
                 model: str | None = None, api_key: str | None = None, timeout: float | None = None,
                 concurrency: int | None = None, prices: dict[str, tuple[float, float]] | None = None,
                 max_attempts: int | None = None, breaker: CircuitBreaker | None = None,
                 outage_patience: float | None = None) -> LLMBackend:
    """The configured backend, wrapped in retries, a concurrency limit and a circuit breaker.

    ``breaker`` replaces the default one (see :class:`ResilientBackend`).

    ``settings`` (optional) is any object or mapping with those field names (``llm_`` prefix allowed);
    keyword arguments override it. ``backend="auto"`` uses the HTTP backend when a base URL is set and
    the embedded model otherwise, as the design promises: no server configured still works.
    """
    given = {"backend": backend, "base_url": base_url, "model": model, "api_key": api_key,
             "timeout": timeout, "concurrency": concurrency, "prices": prices, "max_attempts": max_attempts,
             "outage_patience": outage_patience}
    config = _from_settings(settings) if settings is not None else {}
    config.update({name: value for name, value in given.items() if value is not None})

    kind = config.get("backend") or "auto"
    if kind not in _KINDS:
        raise ValueError(f"backend must be one of {', '.join(_KINDS)}, not {kind!r}")
    if kind == "auto":
        kind = "openai" if config.get("base_url") else "local"

    inner: LLMBackend
    if kind == "openai":
        from clinreason.llm.openai_backend import OpenAIBackend

        if not config.get("base_url"):
            raise LLMError("the openai backend needs a base URL: set CLINREASON_LLM_BASE_URL")
        if not config.get("model"):
            raise LLMError("the openai backend needs a model name: set CLINREASON_LLM_MODEL "
                           "(the id the server lists at /v1/models)")
        inner = OpenAIBackend(config["base_url"], config["model"], api_key=config.get("api_key"),
                              timeout=float(config.get("timeout") or 60.0), prices=config.get("prices"),
                              max_connections=max(8, int(config.get("concurrency") or 8)))
    elif kind == "local":
        from clinreason.llm.local_backend import LocalBackend

        inner = LocalBackend()
    else:
        from clinreason.llm.fake_backend import FakeBackend

        inner = FakeBackend(model_id=config.get("model") or "fake-model")

    patience = config.get("outage_patience")
    return ResilientBackend(inner, max_attempts=int(config.get("max_attempts") or 5),
                            concurrency=int(config.get("concurrency") or 8), breaker=breaker,
                            outage_patience=300.0 if patience is None else float(patience))
