"""Start-up cost: stdio spawn → ``initialize`` → ``tools/list``, apr-mcp against a minimal server.

A host launches an MCP server every time it starts (and some on every new chat), so the time from
spawning the process to the first ``tools/list`` answer is the server's first impression. This
script spawns each server ``--runs`` times, alternating the two so machine load hits both alike,
writes ``initialize``, ``notifications/initialized`` and ``tools/list`` on its stdin at once, and
measures until the ``tools/list`` reply arrives on stdout. It prints the medians and the ratio
apr-mcp / minimal (target ≤ 1.1).

The minimal server is ten lines of the same SDK (``MCPServer`` with one tool), so the ratio shows
what apr-mcp adds on top of importing and starting the SDK itself. It also times the two CLI
commands that should never import the SDK: ``apr-mcp --help`` and ``apr-mcp cache stats``, and
compares apr-mcp's first ``decompose`` call with its second: set-up left to the first call shows
as the difference.

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
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "startup-bench", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    )
).encode()


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spawn_to_tools_list(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds from spawning ``command`` to its ``tools/list`` reply.

    CPU time (of the server process) hardly moves with machine load, wall time does: on a busy
    machine compare the CPU figures.
    """
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
                wall = time.perf_counter() - start
                if "result" not in message or not message["result"].get("tools"):
                    raise RuntimeError(f"{command}: bad tools/list reply {message}")
                return wall, _cpu_s(proc.pid)
        raise RuntimeError(f"{command} exited before answering tools/list")
    finally:
        proc.stdin.close()  # EOF: a stdio server exits
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def first_and_second_call(
    command: list[str], env: dict[str, str], idle_s: float
) -> tuple[float, float]:
    """Seconds of the first and the second ``decompose`` call, ``idle_s`` after the handshake
    (a host's first call comes when its user asks, not the instant the server is listed).

    The two questions differ (no cache hit) and are alike in size, so the difference between the
    two is the set-up the first call paid for: work that could have been done at start-up.
    """
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(_WIRE)
    proc.stdin.flush()
    times: list[float] = []
    started = 0.0
    try:
        for line in proc.stdout:
            message = json.loads(line)
            if message.get("id") == 2 or (message.get("id") in (3, 4) and "result" in message):
                if message["id"] in (3, 4):
                    times.append(time.perf_counter() - started)
                if len(times) == 2:
                    return times[0], times[1]
                if not times:
                    time.sleep(idle_s)
                started = time.perf_counter()
                question = (
                    "Compare Python, Go and Rust for writing a command-line tool",
                    "Compare Java, Kotlin and Scala for writing a web service",
                )[len(times)]
                call = {
                    "jsonrpc": "2.0",
                    "id": 3 + len(times),
                    "method": "tools/call",
                    "params": {"name": "decompose", "arguments": {"question": question}},
                }
                proc.stdin.write((json.dumps(call) + "\n").encode())
                proc.stdin.flush()
        raise RuntimeError(f"{command} exited before answering the tool calls")
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_command(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="spawns per server (default 15)")
    parser.add_argument(
        "--idle",
        type=float,
        default=1.0,
        help="seconds between tools/list and the first tool call (default 1)",
    )
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
            "APR_SIM_TTFT_S": "0.001",
            "APR_SIM_TOKENS_PER_S": "100000",
        }
        servers = {
            "minimal": [sys.executable, str(minimal)],
            "apr-mcp": [sys.executable, "-m", "apr_mcp"],
        }
        cli = {
            "apr-mcp --help": [sys.executable, "-m", "apr_mcp", "--help"],
            "apr-mcp cache stats": [sys.executable, "-m", "apr_mcp", "cache", "stats"],
        }
        for command in servers.values():  # warm the OS file cache and .pyc files
            spawn_to_tools_list(command, env)
        times: dict[str, list[float]] = {name: [] for name in [*servers, *cli]}
        cpu: dict[str, list[float]] = {name: [] for name in servers}
        calls: list[tuple[float, float]] = []
        for _ in range(args.runs):
            for name, command in servers.items():
                wall, used = spawn_to_tools_list(command, env)
                times[name].append(wall)
                cpu[name].append(used)
            for name, command in cli.items():
                times[name].append(run_command(command, env))
            calls.append(first_and_second_call(servers["apr-mcp"], env, args.idle))
    med = {name: statistics.median(values) for name, values in times.items()}
    med_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    print(f"median of {args.runs} runs (python {sys.version.split()[0]}, {os.cpu_count()} cores)")
    print("spawn → initialize → tools/list")
    for name in servers:
        print(
            f"  {name:<22} wall {med[name] * 1000:5.0f} ms (min {min(times[name]) * 1000:.0f})"
            f"   cpu {med_cpu[name] * 1000:5.0f} ms"
        )
    fastest = min(times["apr-mcp"]) / min(times["minimal"])
    print(
        f"  ratio apr-mcp / minimal: wall {med['apr-mcp'] / med['minimal']:.2f} (fastest runs "
        f"{fastest:.2f}), cpu {med_cpu['apr-mcp'] / max(med_cpu['minimal'], 1e-9):.2f}"
        "  (target ≤ 1.10)"
    )
    print("commands that must not import the MCP SDK")
    for name in cli:
        print(f"  {name:<22} wall {med[name] * 1000:5.0f} ms (min {min(times[name]) * 1000:.0f})")
    first = statistics.median(c[0] for c in calls)
    second = statistics.median(c[1] for c in calls)
    print(
        f"apr-mcp decompose, {args.idle:g} s after tools/list: first call {first * 1000:.0f} ms, "
        f"second {second * 1000:.0f} ms (the difference is set-up the first call paid)"
    )


if __name__ == "__main__":
    main()
