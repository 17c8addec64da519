"""Build the backend model a :class:`~apr_mcp.config.Settings` describes, for one role.

Only the bare backend: the runtime adds the wrappers (limit → retry → cache) around it.
"""

from __future__ import annotations

import httpx

from ..config import Settings
from ..errors import ConfigError
from ._http import DEFAULT_MAX_CONNECTIONS
from .base import Model

__all__ = ["build_backend"]


def build_backend(
    settings: Settings, *, role: str = "solver", transport: httpx.AsyncBaseTransport | None = None
) -> Model:
    """The backend for ``role`` (``planner``, ``solver``, ``merger``; other roles use the
    planner's model if they are ``controller``, else the solver's).

    ``transport`` replaces the network of the HTTP backends (tests, loopback). Raises
    :class:`~apr_mcp.errors.ConfigError` with instructions when the settings are incomplete.
    """
    backend = settings.require_backend()
    if role in ("planner", "controller"):
        model = settings.role_model("planner")
    elif role == "merger":
        model = settings.role_model("merger")
    else:
        model = settings.role_model("solver")

    if backend in ("openai", "anthropic"):
        from .anthropic import AnthropicModel
        from .openai_compat import OpenAICompatModel

        base_url, model = _endpoint(settings, model)
        common = {
            "base_url": base_url,
            "api_key": settings.effective_api_key(),
            "model": model,
            "timeout_s": settings.timeout_s,
            "idle_timeout_s": settings.idle_timeout_s,
            "connect_timeout_s": settings.connect_timeout_s,
            "transport": transport,
            "max_connections": _pool_size(settings),
        }
        if backend == "openai":
            return OpenAICompatModel(structured=settings.structured, **common)  # type: ignore[arg-type]
        return AnthropicModel(**common)  # type: ignore[arg-type]
    if backend == "simulated":
        from .simulated import SimulatedModel

        return SimulatedModel.from_settings(settings, model_name=model or "sim-1")
    raise ConfigError(
        "APR_BACKEND=sampling borrows the MCP host's model, so it exists only inside the MCP "
        "server (`apr-mcp serve`), where a connected host can answer sampling requests. For the "
        "CLI pick openai, anthropic or simulated (see `apr-mcp doctor`)."
    )


def _endpoint(settings: Settings, model: str | None) -> tuple[str, str]:
    base_url = settings.effective_base_url()
    if not base_url or not model:  # require_backend() already explains the usual cases
        raise ConfigError(f"APR_BACKEND={settings.backend} needs APR_BASE_URL and APR_MODEL")
    return base_url, model


def _pool_size(settings: Settings) -> int:
    # Never below the run's concurrency; room for a few concurrent runs sharing the backend.
    return max(DEFAULT_MAX_CONNECTIONS, 2 * settings.max_concurrency)
