"""apr-mcp: adaptive parallel reasoning as an MCP server and a CLI.

The public Python API is what ``__all__`` lists; everything else may change between releases.
The MCP server lives in :mod:`apr_mcp.server` (``create_server``) so that importing the engine
never imports the MCP SDK.
"""

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
