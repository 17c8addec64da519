"""Typed settings, read from the environment (``APR_*``) and optionally a TOML file.

This module is the only place apr-mcp reads its environment; everything goes through
pydantic-settings sources. The environment names are a public interface; keep them stable.
Precedence, highest first: explicit overrides (CLI flags, tool arguments) > ``APR_*`` variables >
the config file (``APR_CONFIG``, default ``<user config dir>/apr-mcp/config.toml``) > defaults.
The provider variables (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``OPENAI_BASE_URL``) are fields
of their own (alias choices), used when the ``APR_*`` one is unset.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types
import platformdirs
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from .errors import ConfigError
from .limits import (
    MAX_CONCURRENCY,
    MAX_DEPTH,
    MAX_FOLLOWUPS,
    MAX_MERGE_BUDGET_TOKENS,
    MAX_RETRIES,
    MAX_THREADS,
    MIN_MERGE_BUDGET_TOKENS,
)
from .redact import redact, register_secret

__all__ = [
    "Backend",
    "Settings",
    "config_file",
    "env_name",
    "load_settings",
    "parse_setting",
    "tiktoken_cache_dir",
]

Backend = Literal["openai", "anthropic", "sampling", "simulated"]

DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


class Settings(BaseSettings):
    """Every setting of apr-mcp. See the README's *Configuration* table."""

    model_config = SettingsConfigDict(
        env_prefix="APR_", extra="ignore", validate_default=True, populate_by_name=True
    )

    backend: Backend | None = Field(
        default=None,
        description="openai | anthropic | sampling | simulated. Unset = not configured.",
    )
    base_url: str | None = Field(
        default=None, description="Endpoint root, e.g. http://localhost:11434/v1"
    )
    api_key: SecretStr | None = None
    # Provider variables: fallbacks for api_key / base_url (the backend picks which one applies).
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key")
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "anthropic_api_key")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url")
    )
    model: str | None = Field(
        default=None, description="Solver model id (and the default for all roles)."
    )
    planner_model: str | None = None
    merger_model: str | None = None

    max_concurrency: int = Field(default=8, ge=1, le=MAX_CONCURRENCY)
    min_threads: int = Field(
        default=2, ge=1, le=MAX_THREADS, description="Lower bound of the fan-out when splitting."
    )
    max_threads: int = Field(
        default=8, ge=1, le=MAX_THREADS, description="Upper bound of the fan-out (cap on subtasks)."
    )
    max_followups: int = Field(
        default=4, ge=0, le=MAX_FOLLOWUPS, description="Follow-up threads a run may spawn."
    )
    max_depth: int = Field(
        default=2, ge=0, le=MAX_DEPTH, description="How deep follow-ups may nest."
    )
    early_stop_confidence: float = Field(default=0.9, ge=0.0, le=1.0)
    deadline_s: float = Field(
        default=55.0, gt=0, description="Default per-call deadline (hosts time out ~60 s)."
    )
    token_budget: int | None = Field(
        default=None,
        ge=1,
        description="Tokens planning and threads may spend; when crossed, running threads are "
        "cancelled and what finished is merged.",
    )
    merge_budget_tokens: int = Field(
        default=6000,
        ge=MIN_MERGE_BUDGET_TOKENS,
        le=MAX_MERGE_BUDGET_TOKENS,
        description="Token budget of the merge context.",
    )
    max_tokens: int = Field(default=1024, ge=16, description="Max output tokens per solver call.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    planner: Literal["auto", "model", "heuristic"] = Field(
        default="auto",
        description="Who plans: heuristics when the parts are countable, else the model (auto); "
        "always the model; never the model.",
    )
    thread_format: Literal["text", "json"] = Field(
        default="text",
        description="How threads answer: free text with a short trailer (streams, suits small "
        "models), or JSON (for endpoints that enforce schemas).",
    )
    lead_tokens: int = Field(
        default=64, ge=16, le=1024, description="Max output tokens of a composed answer's lead."
    )
    meta_controller: bool = Field(
        default=False, description="Ask a model to steer the run (continue/merge/split)."
    )

    cache: bool = Field(default=True, description="APR_CACHE=on/off.")
    cache_dir: Path | None = None
    cache_lock_timeout: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds to wait for another process's cache lock before running without "
        "the cache.",
    )
    runs_dir: Path | None = Field(default=None, description="Where run traces are saved.")
    config: Path | None = Field(default=None, description="The TOML config file (APR_CONFIG).")

    timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Total time one model call may take (the run's deadline caps it further).",
    )
    idle_timeout_s: float = Field(
        default=30.0, gt=0, description="A stream that sends no byte for this long has stalled."
    )
    structured: Literal["auto", "schema", "prompt"] = Field(
        default="auto",
        description="Structured output: auto = native json_schema unless the endpoint refused "
        "it; schema = always native; prompt = never (JSON instructions in the prompt).",
    )
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=MAX_RETRIES)

    # Simulated backend: latency model.
    sim_ttft_s: float = Field(default=0.05, ge=0)
    sim_tokens_per_s: float = Field(default=400.0, gt=0)
    sim_reasoning_scale: float = Field(
        default=1.0,
        gt=0,
        description="Simulated backend: multiplier on solver and sequential reply length.",
    )
    sim_script: Path | None = Field(
        default=None,
        description="JSON script of scripted replies/faults for the simulated backend.",
    )

    # Streamable HTTP server.
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8765, ge=0, le=65535)
    http_token: SecretStr | None = Field(
        default=None, description="Bearer token required over HTTP."
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra Origins allowed over HTTP."
    )
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra Host header values accepted over HTTP (host or host:port; host:* for "
        "any port), e.g. the name a reverse proxy forwards. Loopback names are always accepted.",
    )
    max_message_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest JSON-RPC message accepted over stdio (larger: an error reply).",
    )

    @field_validator("backend", mode="before")
    @classmethod
    def _lower_backend(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip().lower() or None
        return v

    @field_validator("cache", mode="before")
    @classmethod
    def _on_off(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() in {"on", "yes", "1", "true"}:
            return True
        if isinstance(v, str) and v.strip().lower() in {"off", "no", "0", "false"}:
            return False
        return v

    @field_validator("http_token", mode="before")
    @classmethod
    def _no_empty_token(cls, v: Any) -> Any:
        raw = v.get_secret_value() if isinstance(v, SecretStr) else v
        if isinstance(raw, str) and not raw.strip():
            # An empty token must not quietly mean "no authentication".
            raise ValueError(
                "an empty token is not allowed: set a real one (e.g. `openssl rand -hex 32`) "
                "or unset APR_HTTP_TOKEN to serve without one"
            )
        return v

    @field_validator("allowed_origins", "http_allowed_hosts", mode="before")
    @classmethod
    def _split_origins(cls, v: Any) -> Any:
        if isinstance(v, str) and not v.strip().startswith("["):
            return [o.strip() for o in v.split(",") if o.strip()]
        return v

    @model_validator(mode="after")
    def _bounds(self) -> Settings:
        if self.min_threads > self.max_threads:
            raise ValueError(
                f"APR_MIN_THREADS ({self.min_threads}) must not exceed APR_MAX_THREADS "
                f"({self.max_threads}) (min_threads > max_threads)"
            )
        return self

    @model_validator(mode="after")
    def _register_secrets(self) -> Settings:
        # Every output surface redacts these (apr_mcp.redact), wherever they turn up.
        register_secret(self.effective_api_key())
        if self.http_token is not None:
            register_secret(self.http_token.get_secret_value())
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Overrides > environment > the TOML file > defaults.
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config_file())

    # ----- derived values -----

    def effective_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        fallback = {"anthropic": self.anthropic_api_key, "openai": self.openai_api_key}
        key = fallback.get(self.backend or "")
        return key.get_secret_value() if key is not None else None

    def effective_base_url(self) -> str | None:
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.backend == "openai":
            return (self.openai_base_url or DEFAULT_BASE_URLS["openai"]).rstrip("/")
        if self.backend == "anthropic":
            return DEFAULT_BASE_URLS["anthropic"]
        return None

    def role_model(self, role: Literal["planner", "solver", "merger"]) -> str | None:
        if role == "planner":
            return self.planner_model or self.model
        if role == "merger":
            return self.merger_model or self.model
        return self.model

    def effective_cache_dir(self) -> Path:
        return self.cache_dir or Path(platformdirs.user_cache_dir("apr-mcp")) / "cache"

    def effective_runs_dir(self) -> Path:
        return self.runs_dir or Path(platformdirs.user_data_dir("apr-mcp")) / "runs"

    def require_backend(self) -> Backend:
        """The configured backend, or a ConfigError that tells the user how to configure one."""
        if self.backend is None:
            raise ConfigError(NOT_CONFIGURED)
        if self.backend in ("openai", "anthropic") and not self.model:
            raise ConfigError(
                f"APR_BACKEND={self.backend} needs a model: set APR_MODEL (e.g. "
                + ("gpt-4o-mini" if self.backend == "openai" else "claude-sonnet-4-5")
                + ", or for Ollama e.g. llama3.1)."
            )
        if self.backend == "anthropic" and not self.effective_api_key():
            raise ConfigError("APR_BACKEND=anthropic needs APR_API_KEY or ANTHROPIC_API_KEY.")
        if (
            self.backend == "openai"
            and not self.effective_api_key()
            and "//api.openai.com" in (self.effective_base_url() or "")
        ):
            raise ConfigError(
                "APR_BACKEND=openai with api.openai.com needs APR_API_KEY or OPENAI_API_KEY; "
                "for a local server set APR_BASE_URL (e.g. http://localhost:11434/v1 for Ollama)."
            )
        return self.backend

    def masked(self) -> dict[str, Any]:
        """Effective configuration with secrets masked (for ``apr-mcp doctor``)."""
        data = self.model_dump(mode="json", exclude={*_PROVIDER_FIELDS})
        key = self.effective_api_key()
        data["api_key"] = _mask(key)
        data["http_token"] = _mask(self.http_token.get_secret_value() if self.http_token else None)
        base_url = self.effective_base_url()
        data["base_url"] = redact(base_url) if base_url else base_url
        data["cache_dir"] = str(self.effective_cache_dir())
        data["runs_dir"] = str(self.effective_runs_dir())
        data["config"] = str(config_file())
        data["planner_model"] = self.role_model("planner")
        data["merger_model"] = self.role_model("merger")
        return data


def _mask(secret: str | None) -> str | None:
    if not secret:
        return None
    if len(secret) <= 8:
        return "****"
    return f"{secret[:3]}…{secret[-4:]}"


NOT_CONFIGURED = """\
No model backend is configured. Pick one:
  OpenAI or any OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio, OpenRouter):
    export APR_BACKEND=openai APR_MODEL=gpt-4o-mini OPENAI_API_KEY=sk-...
    export APR_BACKEND=openai APR_BASE_URL=http://localhost:11434/v1 APR_MODEL=llama3.1   # Ollama
  Anthropic:
    export APR_BACKEND=anthropic APR_MODEL=claude-sonnet-4-5 ANTHROPIC_API_KEY=...
  The host's own model (MCP sampling; VS Code supports it):
    export APR_BACKEND=sampling
  Try it offline with the built-in simulated model:
    apr-mcp solve --backend simulated "Compare Python, Go and Rust for a CLI tool"
Run `apr-mcp doctor` to check the result."""


_PROVIDER_FIELDS = ("openai_api_key", "anthropic_api_key", "openai_base_url")


class _ConfigLocation(BaseSettings):
    """Where the TOML file is: needed before the file can be a source of :class:`Settings`."""

    model_config = SettingsConfigDict(env_prefix="APR_", extra="ignore")

    config: Path | None = None


class _TiktokenEnv(BaseSettings):
    """tiktoken's own variables: apr-mcp seeds the directory tiktoken reads, so it must agree."""

    model_config = SettingsConfigDict(extra="ignore")

    cache_dir: str | None = Field(
        default=None, validation_alias=AliasChoices("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")
    )


def config_file() -> Path:
    """The TOML config file: ``APR_CONFIG``, else ``<user config dir>/apr-mcp/config.toml``."""
    explicit = _ConfigLocation().config
    return explicit or Path(platformdirs.user_config_dir("apr-mcp")) / "config.toml"


def tiktoken_cache_dir() -> str | None:
    """``TIKTOKEN_CACHE_DIR`` (or ``DATA_GYM_CACHE_DIR``) as tiktoken reads it; None if unset."""
    return _TiktokenEnv().cache_dir


def env_name(field: str) -> str:
    """The environment variable that sets ``field`` (e.g. ``APR_MAX_CONCURRENCY``)."""
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        first = info.validation_alias.choices[0]
        return first if isinstance(first, str) else field.upper()
    return f"APR_{field.upper()}"


def _field_of(loc: tuple[int | str, ...]) -> str | None:
    if not loc:
        return None
    name = str(loc[0])
    if name in Settings.model_fields:
        return name
    for field, info in Settings.model_fields.items():  # matched through an alias choice
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and name in alias.choices:
            return field
    return None


def _allowed(info: FieldInfo) -> str:
    """What a field accepts, in words (for one-line error messages)."""
    annotation = info.annotation
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Literal or any(get_origin(a) is Literal for a in args):
        values = get_args(annotation) if get_origin(annotation) is Literal else get_args(args[0])
        return "one of " + ", ".join(str(v) for v in values)
    base = args[0] if args else annotation
    if base is bool:
        return "on or off"
    lo = hi = None
    for m in info.metadata:
        if isinstance(m, annotated_types.Ge):
            lo = f"{m.ge}"
        elif isinstance(m, annotated_types.Gt):
            lo = f"more than {m.gt}"
        elif isinstance(m, annotated_types.Le):
            hi = f"{m.le}"
    kind = "a whole number" if base is int else "a number" if base is float else None
    if kind is None:
        return "a " + getattr(base, "__name__", "value").lower()
    if lo is not None and hi is not None:
        return f"{kind} from {lo} to {hi}"
    if lo is not None:
        return f"{kind} ≥ {lo}" if not lo.startswith("more") else f"{kind} {lo}"
    return kind


def parse_setting(field: str, text: str) -> Any:
    """``text`` validated as the setting ``field`` would validate it (for CLI flags).

    Raises ValueError saying what the setting accepts, so a flag and its variable agree.
    """
    info = Settings.model_fields[field]
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(Annotated[info.annotation, *info.metadata])  # type: ignore[arg-type]
        return adapter.validate_python(text)
    except ValidationError:
        raise ValueError(f"expected {_allowed(info)}") from None


def explain(exc: ValidationError) -> str:
    """One line per invalid setting, naming its variable and what it accepts."""
    lines: list[str] = []
    for err in exc.errors():
        field = _field_of(err["loc"])
        if field is None:  # a rule across fields: its message names the variables
            lines.append(f"invalid configuration: {err['msg'].removeprefix('Value error, ')}")
            continue
        info = Settings.model_fields[field]
        secret = info.annotation in (SecretStr, SecretStr | None)
        shown = "…" if secret else str(err.get("input"))[:60]
        if err["type"] == "value_error":  # our own validator: its message says what to do
            why = err["msg"].removeprefix("Value error, ")
            lines.append(f"invalid configuration: {field} ({env_name(field)}): {why}")
            continue
        lines.append(
            f"invalid configuration: {env_name(field)}={shown} is not valid: expected "
            f"{_allowed(info)}"
        )
    path = config_file()
    if path.is_file():  # the value may come from the file rather than the environment
        lines.append(f"(settings come from the environment and from {path})")
    return "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Settings from overrides (non-None values) > environment > config file > defaults."""
    explicit = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**explicit)
    except ValidationError as exc:
        raise ConfigError(explain(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot read config file {config_file()}: {exc}") from None
    except SettingsError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
