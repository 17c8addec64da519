"""apr-mcp: adaptive parallel reasoning as an MCP server and a CLI.

The public Python API is what ``__all__`` lists; everything else may change between releases.
The MCP server lives in :mod:`apr_mcp.server` (``create_server``) so that importing the engine
never imports the MCP SDK. The names below are imported on first use (PEP 562), so that
``import apr_mcp.cli`` — every ``apr-mcp`` command — does not pay for the engine, the backends
and the tokenizer before it knows it needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cache import ResultCache
    from .config import Settings, load_settings
    from .engine import Engine
    from .errors import (
        AprError,
        BudgetExceeded,
        CacheError,
        ConfigError,
        ModelConnectionError,
        ModelError,
        ModelHTTPError,
        ModelOutputError,
        ModelTimeoutError,
        PlanError,
        RateLimitError,
        SamplingUnavailable,
        ServerError,
        StreamInterrupted,
    )
    from .llm.base import Message, Model, ModelRequest, ModelResponse, Usage, WrapperModel
    from .llm.simulated import SimRule, SimScript, SimulatedModel
    from .runtime import Runtime, build_engine, build_runtime
    from .schemas import (
        Decision,
        MergeResult,
        MergeStrategy,
        Plan,
        RunEvent,
        RunMetrics,
        SolveResult,
        SolveRun,
        Subtask,
        ThreadAnswer,
        ThreadResult,
        ThreadStatus,
    )
    from .trace import RunStore

__version__ = "0.1.0"

# Each public name and the module that defines it.
_EXPORTS: dict[str, str] = {
    "AprError": ".errors",
    "BudgetExceeded": ".errors",
    "CacheError": ".errors",
    "ConfigError": ".errors",
    "Decision": ".schemas",
    "Engine": ".engine",
    "MergeResult": ".schemas",
    "MergeStrategy": ".schemas",
    "Message": ".llm.base",
    "Model": ".llm.base",
    "ModelConnectionError": ".errors",
    "ModelError": ".errors",
    "ModelHTTPError": ".errors",
    "ModelOutputError": ".errors",
    "ModelRequest": ".llm.base",
    "ModelResponse": ".llm.base",
    "ModelTimeoutError": ".errors",
    "Plan": ".schemas",
    "PlanError": ".errors",
    "RateLimitError": ".errors",
    "ResultCache": ".cache",
    "RunEvent": ".schemas",
    "RunMetrics": ".schemas",
    "RunStore": ".trace",
    "Runtime": ".runtime",
    "SamplingUnavailable": ".errors",
    "ServerError": ".errors",
    "Settings": ".config",
    "SimRule": ".llm.simulated",
    "SimScript": ".llm.simulated",
    "SimulatedModel": ".llm.simulated",
    "SolveResult": ".schemas",
    "SolveRun": ".schemas",
    "StreamInterrupted": ".errors",
    "Subtask": ".schemas",
    "ThreadAnswer": ".schemas",
    "ThreadResult": ".schemas",
    "ThreadStatus": ".schemas",
    "Usage": ".llm.base",
    "WrapperModel": ".llm.base",
    "build_engine": ".runtime",
    "build_runtime": ".runtime",
    "load_settings": ".config",
}


__all__ = [
    "AprError",
    "BudgetExceeded",
    "CacheError",
    "ConfigError",
    "Decision",
    "Engine",
    "MergeResult",
    "MergeStrategy",
    "Message",
    "Model",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "ModelOutputError",
    "ModelRequest",
    "ModelResponse",
    "ModelTimeoutError",
    "Plan",
    "PlanError",
    "RateLimitError",
    "ResultCache",
    "RunEvent",
    "RunMetrics",
    "RunStore",
    "Runtime",
    "SamplingUnavailable",
    "ServerError",
    "Settings",
    "SimRule",
    "SimScript",
    "SimulatedModel",
    "SolveResult",
    "SolveRun",
    "StreamInterrupted",
    "Subtask",
    "ThreadAnswer",
    "ThreadResult",
    "ThreadStatus",
    "Usage",
    "WrapperModel",
    "build_engine",
    "build_runtime",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
