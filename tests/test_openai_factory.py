"""build_backend: settings → the right backend, per role, with clear config errors."""

from __future__ import annotations

import json

import httpx
import pytest

from apr_mcp.config import Settings
from apr_mcp.errors import ConfigError
from apr_mcp.llm.anthropic import AnthropicModel
from apr_mcp.llm.base import Message, ModelRequest
from apr_mcp.llm.factory import build_backend
from apr_mcp.llm.openai_compat import OpenAICompatModel


def test_unconfigured_explains_how_to_configure() -> None:
    with pytest.raises(ConfigError, match="APR_BACKEND"):
        build_backend(Settings())


def test_sampling_only_exists_inside_the_server() -> None:
    with pytest.raises(ConfigError, match="MCP server"):
        build_backend(Settings(backend="sampling"))


def test_openai_needs_a_model() -> None:
    with pytest.raises(ConfigError, match="APR_MODEL"):
        build_backend(Settings(backend="openai"))


async def test_openai_roles_models_and_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    settings = Settings(
        backend="openai",
        base_url="http://localhost:11434/v1/",
        model="llama3.1",
        planner_model="qwen2.5:0.5b",
        timeout_s=12,
        connect_timeout_s=3,
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}
        )

    planner = build_backend(settings, role="planner", transport=httpx.MockTransport(handler))
    solver = build_backend(settings, transport=httpx.MockTransport(handler))
    merger = build_backend(settings, role="merger", transport=httpx.MockTransport(handler))
    assert isinstance(planner, OpenAICompatModel) and isinstance(solver, OpenAICompatModel)
    assert (planner.model_name, solver.model_name, merger.model_name) == (
        "qwen2.5:0.5b",
        "llama3.1",
        "llama3.1",
    )
    assert planner.base_url == "http://localhost:11434/v1"
    await planner.complete(ModelRequest(messages=[Message(role="user", content="x")]))
    assert str(seen[0].url) == "http://localhost:11434/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-env"
    assert json.loads(seen[0].content)["model"] == "qwen2.5:0.5b"
    for m in (planner, solver, merger):
        await m.aclose()


def test_anthropic_needs_a_key_and_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        build_backend(Settings(backend="anthropic", model="claude-sonnet-4-5"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ak")
    model = build_backend(Settings(backend="anthropic", model="claude-sonnet-4-5"), role="merger")
    assert isinstance(model, AnthropicModel)
    assert model.base_url == "https://api.anthropic.com" and model.model_name == "claude-sonnet-4-5"


def test_simulated_uses_latency_settings() -> None:
    from apr_mcp.llm.simulated import SimulatedModel

    model = build_backend(Settings(backend="simulated", sim_ttft_s=0.001, sim_tokens_per_s=5000))
    assert isinstance(model, SimulatedModel) and model.model_name == "sim-1"
    assert (model.ttft_s, model.tokens_per_s) == (0.001, 5000)
    named = build_backend(
        Settings(backend="simulated", model="sim-big", planner_model="sim-small"), role="planner"
    )
    assert named.model_name == "sim-small"
