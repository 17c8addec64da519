"""Start-up cost: stdio spawn → ``initialize`` → ``tools/list``, apr-mcp against a minimal server.

A host launches an MCP server every time it starts (and some on every new chat), so the time from
spawning the process to the first ``tools/list`` answer is the server's first impression. This
script spawns each server ``--runs`` times, alternating the two so machine load hits both alike,
writes ``initialize``, ``notifications/initialized`` and ``tools/list`` on its stdin at once, and
measures until the ``tools/list`` reply arrives on stdout. It prints the medians and the ratio
apr-mcp / minimal (target ≤ 1.1).

The minimal server is ten lines of the same SDK (``MCPServer`` with one tool), so the ratio shows
what apr-mcp adds on top of importing and starting the SDK itself. It also times the two CLI
commands that should never import the SDK: ``apr-mcp --help`` and ``apr-mcp cache stats``.

    python benchmarks/startup.py              # 15 runs each (~30 s on 2 cores)
    python benchmarks/startup.py --runs 31
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MINIMAL_SERVER = '''
from mcp.server.mcpserver import MCPServer

server = MCPServer("minimal")


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


server.run("stdio")
'''

_WIRE = "".join(
    json.dumps(m) + "\n"
    for m in (
        {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "startup-bench", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    )
).encode()


def spawn_to_tools_list(command: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning ``command`` to its ``tools/list`` reply (the process is then closed)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(_WIRE)
    proc.stdin.flush()
    try:
        for line in proc.stdout:
            message = json.loads(line)
            if message.get("id") == 2:
                if "result" not in message or not message["result"].get("tools"):
                    raise RuntimeError(f"{command}: bad tools/list reply {message}")
                return time.perf_counter() - start
        raise RuntimeError(f"{command} exited before answering tools/list")
    finally:
        proc.stdin.close()  # EOF: a stdio server exits
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_command(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="spawns per server (default 15)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        minimal = Path(tmp) / "minimal_server.py"
        minimal.write_text(MINIMAL_SERVER, encoding="utf-8")
        # A benchmark is a harness, not the product: it builds the child's environment itself.
        env = {
            **os.environ,
            "APR_BACKEND": "simulated",
            "APR_CACHE_DIR": str(Path(tmp) / "cache"),
            "APR_RUNS_DIR": str(Path(tmp) / "runs"),
            "APR_CONFIG": str(Path(tmp) / "none.toml"),
        }
        servers = {
            "minimal": [sys.executable, str(minimal)],
            "apr-mcp": [sys.executable, "-m", "apr_mcp"],
        }
        cli = {
            "apr-mcp --help": [sys.executable, "-m", "apr_mcp", "--help"],
            "apr-mcp cache stats": [sys.executable, "-m", "apr_mcp", "cache", "stats"],
        }
        for name, command in servers.items():  # warm the OS file cache and .pyc files
            spawn_to_tools_list(command, env)
        times: dict[str, list[float]] = {name: [] for name in [*servers, *cli]}
        for _ in range(args.runs):
            for name, command in servers.items():
                times[name].append(spawn_to_tools_list(command, env))
            for name, command in cli.items():
                times[name].append(run_command(command, env))
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"spawn → initialize → tools/list, median of {args.runs} (python {sys.version.split()[0]})")
    for name in [*servers, *cli]:
        print(f"  {name:<22} {med[name] * 1000:7.0f} ms   (min {min(times[name]) * 1000:.0f} ms)")
    print(f"ratio apr-mcp / minimal: {med['apr-mcp'] / med['minimal']:.2f}  (target ≤ 1.10)")


if __name__ == "__main__":
    main()
