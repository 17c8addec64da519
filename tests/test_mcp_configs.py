"""The host configurations we ship are well formed, keep secrets out of files, and really start
the server (the repository's own ``.vscode/mcp.json`` entry is launched and lists the tools)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
HOSTS = ROOT / "examples" / "hosts"


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _host_configs() -> list[Path]:
    return sorted(p for p in HOSTS.rglob("*.json"))


def test_every_host_has_an_openai_and_an_ollama_variant() -> None:
    names = {str(p.relative_to(HOSTS)) for p in _host_configs()}
    assert names == {
        "claude-desktop/claude_desktop_config.openai.json",
        "claude-desktop/claude_desktop_config.ollama.json",
        "claude-code/openai/.mcp.json",
        "claude-code/ollama/.mcp.json",
        "cursor/openai/.cursor/mcp.json",
        "cursor/ollama/.cursor/mcp.json",
        "vscode/openai/.vscode/mcp.json",
        "vscode/ollama/.vscode/mcp.json",
    }
    script = (HOSTS / "claude-code" / "add.sh").read_text(encoding="utf-8")
    assert "claude mcp add --transport stdio" in script and "-- apr-mcp" in script


@pytest.mark.parametrize("path", _host_configs(), ids=lambda p: str(p.relative_to(HOSTS)))
def test_host_config_shape(path: Path) -> None:
    data = _load(path)
    key = "servers" if "vscode" in path.parts else "mcpServers"  # VS Code's key differs
    assert set(data) <= {key, "inputs"} and key in data
    server = data[key]["apr-mcp"]
    assert server["command"].endswith("apr-mcp")
    env = server["env"]
    assert env["APR_BACKEND"] == "openai" and env["APR_MODEL"]
    if "ollama" in path.name or "ollama" in path.parts:
        assert "11434" in env["APR_BASE_URL"] and "OPENAI_API_KEY" not in env
    else:
        key_value = env["OPENAI_API_KEY"]
        # Secrets come from the host (inputs / environment); only Claude Desktop needs a paste-in.
        if "vscode" in path.parts:
            assert key_value == "${input:openai-api-key}"
            assert (
                data["inputs"][0]["id"] == "openai-api-key"
                and data["inputs"][0]["password"] is True
            )
        elif "claude-desktop" in path.parts:
            assert key_value == "sk-REPLACE-ME"
        else:
            assert key_value.startswith("${") and "OPENAI_API_KEY" in key_value


def test_repository_vscode_config_uses_inputs_for_secrets() -> None:
    data = _load(ROOT / ".vscode" / "mcp.json")
    assert "servers" in data and "mcpServers" not in data
    declared = {
        i["id"] for i in data["inputs"] if i["type"] == "promptString" and i["password"] is True
    }
    for server in data["servers"].values():
        for value in server.get("env", {}).values():
            assert not value.startswith("sk-")
            if value.startswith("${input:"):
                assert value[len("${input:") : -1] in declared
    assert {s["env"]["APR_BACKEND"] for s in data["servers"].values()} >= {
        "sampling",
        "openai",
        "simulated",
    }


async def test_repository_vscode_server_starts_and_lists_tools(tmp_path: Path) -> None:
    entry = _load(ROOT / ".vscode" / "mcp.json")["servers"]["apr-mcp-simulated"]
    command = entry["command"].replace("${workspaceFolder}", str(ROOT))
    if not Path(
        command
    ).exists():  # not installed into .venv: use the interpreter running the tests
        command = str(Path(sys.executable).parent / "apr-mcp")
    assert Path(command).exists(), f"apr-mcp entry point not installed: {command}"
    env = {**os.environ, **entry["env"], "APR_CACHE_DIR": str(tmp_path / "cache")}
    params = StdioServerParameters(command=command, args=entry["args"], env=env, cwd=str(tmp_path))
    with anyio.fail_after(30):
        async with Client(params, mode="legacy") as client:
            names = {t.name for t in (await client.list_tools()).tools}
    assert names == {"decompose", "parallel_solve", "merge", "solve"}
