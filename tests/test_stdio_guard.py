"""Malformed input over a REAL stdio subprocess: every line gets its reply, and serving goes on.

The property test (hypothesis) throws raw bytes, arbitrary JSON, mutated JSON-RPC envelopes, deep
nesting, lone surrogates, batches and oversized lines at ``python -m apr_mcp``; after each one it
sends a ``ping`` and waits (bounded) for the replies that line is owed: one error reply for a line
that is not a valid JSON-RPC message, the request's own reply for a valid request, nothing for a
valid notification. At the end ``tools/list`` still answers.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.client import Client
from pydantic import ValidationError

from apr_mcp.config import Settings
from apr_mcp.server import create_server
from apr_mcp.stdio import INVALID_REQUEST, PARSE_ERROR, Rejection, check_line
from apr_mcp.trace import RunStore

MAX_BYTES = 64 * 1024  # the subprocess's APR_MAX_MESSAGE_BYTES: small, so oversize is cheap
REPLY_WAIT_S = 20.0


class StdioServer:
    """``python -m apr_mcp`` on pipes; a thread turns stdout lines into parsed messages."""

    def __init__(self, tmp: Path) -> None:
        env = {
            **os.environ,
            "APR_BACKEND": "simulated",
            "APR_SIM_TTFT_S": "0.001",
            "APR_SIM_TOKENS_PER_S": "100000",
            "APR_CACHE": "off",
            "APR_RUNS_DIR": str(tmp / "runs"),
            "APR_CACHE_DIR": str(tmp / "cache"),
            "APR_MAX_MESSAGE_BYTES": str(MAX_BYTES),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "apr_mcp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=tmp,
        )
        self.messages: queue.Queue[dict[str, Any] | bytes] = queue.Queue()
        self.raw_lines: list[bytes] = []
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        self._ids = itertools.count(1)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw_lines.append(line)
            try:
                self.messages.put(json.loads(line))
            except ValueError:
                self.messages.put(line)  # not JSON: the test fails on it

    def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def next_message(self) -> dict[str, Any]:
        item = self.messages.get(timeout=REPLY_WAIT_S)  # a bounded wait, not a sleep
        assert isinstance(item, dict), f"the server wrote a non-JSON line: {item!r}"
        assert item.get("jsonrpc") == "2.0", item
        return item

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        rid = f"probe-{next(self._ids)}"
        frame: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            frame["params"] = params
        self.send(json.dumps(frame).encode())
        while True:
            message = self.next_message()
            if message.get("id") == rid:
                return message

    def initialize(self) -> None:
        reply = self.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "fuzz", "version": "0"},
            },
        )
        assert "result" in reply, reply
        self.send(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}')

    def close(self) -> int:
        assert self.proc.stdin is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()  # EOF: the server exits on its own
        code = self.proc.wait(timeout=REPLY_WAIT_S)
        self._pump_thread.join(timeout=REPLY_WAIT_S)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StdioServer]:
    srv = StdioServer(tmp_path)
    try:
        srv.initialize()
        yield srv
    finally:
        if srv.proc.poll() is None and srv.proc.stdin is not None and srv.proc.stdin.closed:
            srv.proc.kill()
        srv.close()


def owed(line: bytes) -> tuple[str, Any]:
    """What the server owes for ``line``, judged by the SDK's own validator (the oracle):
    ("none",) for blank lines and valid notifications/responses, ("reply", id) for a valid
    request, ("error", id-or-None) for anything else."""
    if not line.strip():
        return "none", None
    if len(line) > MAX_BYTES:
        return "error", None
    try:
        value = json.loads(line, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return "error", None
    try:
        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValidationError:
        return "error", None
    id_ok = not (isinstance(value, dict) and "id" in value and "method" in value) or (
        isinstance(value["id"], (int, str)) and not isinstance(value["id"], bool)
    )
    if not id_ok or _depth(value) > 128 or not _utf8_ok(value):
        return "error", None
    if isinstance(message, types.JSONRPCRequest):
        return "reply", message.id
    return "none", None


def _no_constants(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _utf8_ok(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def exchange(srv: StdioServer, line: bytes) -> list[dict[str, Any]]:
    """Send ``line`` then a ping; return every reply (message with an id) that came for ``line``,
    after checking that what was owed arrived."""
    kind, want_id = owed(line)
    srv.send(line)
    probe = f"probe-{next(srv._ids)}"
    srv.send(json.dumps({"jsonrpc": "2.0", "id": probe, "method": "ping"}).encode())
    replies: list[dict[str, Any]] = []
    seen_probe = False
    # A rejected line is answered before the next line is read, so its reply precedes the ping's;
    # a valid request runs concurrently, so wait for its own id too.
    while not seen_probe or (kind == "reply" and not any(r.get("id") == want_id for r in replies)):
        message = srv.next_message()
        if "id" not in message:
            continue  # a notification (progress, logging): owed to nobody
        if message["id"] == probe:
            seen_probe = True
            assert message.get("result") == {}, message
            continue
        replies.append(message)
    if kind == "none":
        assert replies == [], (line[:200], replies)
    elif kind == "error":
        assert len(replies) == 1, (line[:200], replies)
        error = replies[0].get("error")
        assert error and error["code"] in (PARSE_ERROR, INVALID_REQUEST), replies[0]
        assert len(error["message"]) <= 500
    else:
        assert [r["id"] for r in replies] == [want_id], (line[:200], replies)
    return replies


# ----- strategies -----

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
ids = st.one_of(
    st.integers(-5, 10_000),
    st.text(alphabet="abcxyz0123456789", min_size=1, max_size=6),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just([1]),
    st.just({"a": 1}),
)
methods = st.one_of(
    st.sampled_from(["ping", "tools/list", "resources/list", "prompts/list", "nope/unknown"]),
    st.text(max_size=12),
    st.integers(),
    st.none(),
)
tool_args = st.fixed_dictionaries(
    {"question": st.sampled_from(["", "  \n\t", "What is 2+2?", 5, True])},
    optional={
        "max_subtasks": st.sampled_from([True, "5", 5.5, 0, 3, None]),
        "deadline_s": st.sampled_from([True, "5", 0, -1, 1e9, 10, None]),
    },
)


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """A valid request, then zero to two mutations: a part dropped or replaced by a wrong value."""
    method = draw(
        st.sampled_from(
            ["ping", "tools/list", "resources/list", "prompts/list", "nope/unknown", "tools/call"]
        )
    )
    frame: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": draw(
            st.integers(0, 10_000) | st.text(alphabet="abcxyz0123456789", min_size=1, max_size=6)
        ),
        "method": method,
    }
    if method == "tools/call":
        name = draw(st.sampled_from(["decompose", "no_such_tool", ""]))
        frame["params"] = {"name": name, "arguments": draw(tool_args)}
    elif draw(st.booleans()):
        frame["params"] = draw(st.dictionaries(st.text(max_size=5), json_scalars, max_size=3))
    wrong = {
        "jsonrpc": st.sampled_from(["1.0", 2, None, ""]),
        "id": ids,
        "method": methods,
        "params": json_values,
    }
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(sorted(wrong)))
        if draw(st.booleans()):
            frame.pop(key, None)
        else:
            frame[key] = draw(wrong[key])
    return json.dumps(frame).encode()


@st.composite
def deep(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(100, 3000))
    inner = "[" * depth + "]" * depth
    if draw(st.booleans()):
        return inner.encode()
    return f'{{"jsonrpc": "2.0", "id": 7, "method": "ping", "params": {{"x": {inner}}}}}'.encode()


@st.composite
def surrogates(draw: st.DrawFn) -> bytes:
    escape = draw(st.sampled_from(["\\ud800", "\\udfff", "\\udbff", "a\\ud834b"]))
    where = draw(st.sampled_from(["params", "method", "id"]))
    if where == "params":
        return f'{{"jsonrpc":"2.0","id":8,"method":"ping","params":{{"s":"{escape}"}}}}'.encode()
    if where == "method":
        return f'{{"jsonrpc":"2.0","id":8,"method":"{escape}"}}'.encode()
    return f'{{"jsonrpc":"2.0","id":"{escape}","method":"ping"}}'.encode()


@st.composite
def oversized(draw: st.DrawFn) -> bytes:
    pad = "x" * draw(st.integers(MAX_BYTES, 2 * MAX_BYTES))
    if draw(st.booleans()):
        frame = {"jsonrpc": "2.0", "id": 9, "method": "ping", "params": {"p": pad}}
        return json.dumps(frame).encode()
    return pad.encode()


batches = st.lists(envelopes(), min_size=0, max_size=3).map(
    lambda items: b"[" + b",".join(items) + b"]"
)
raw_bytes = st.binary(max_size=200).map(lambda b: b.replace(b"\n", b""))
any_json = json_values.map(lambda v: json.dumps(v).encode())
lines = st.one_of(
    raw_bytes, any_json, envelopes(), envelopes(), batches, deep(), surrogates(), oversized()
)


def test_every_malformed_line_gets_a_reply_and_the_server_keeps_serving(
    server: StdioServer,
) -> None:
    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,  # the same cases on every run: a CI failure reproduces locally
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(line=lines)
    def one(line: bytes) -> None:
        exchange(server, line)
        seen[owed(line)[0]] = seen.get(owed(line)[0], 0) + 1

    seen: dict[str, int] = {}
    one()
    # The cases covered all three outcomes: error replies, replies to requests, silence.
    assert seen.get("error", 0) > 50 and seen.get("reply", 0) > 5 and seen.get("none", 0) > 0, seen
    tools = server.request("tools/list")
    assert {t["name"] for t in tools["result"]["tools"]} == {
        "decompose",
        "parallel_solve",
        "merge",
        "solve",
    }
    assert server.close() == 0
    # Every byte the server wrote was a JSON-RPC frame.
    assert all(json.loads(raw)["jsonrpc"] == "2.0" for raw in server.raw_lines)


@pytest.mark.parametrize(
    ("line", "code", "reply_id"),
    [
        (b"not json", PARSE_ERROR, None),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "ping"', PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":NaN}}', PARSE_ERROR, None),
        (b"\xff\xfe{}", PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","id":3,"method":"ping","params":{"s":"\\ud800"}}', INVALID_REQUEST, 3),
        (b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}', INVALID_REQUEST, None),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', INVALID_REQUEST, None),
        (b"[]", INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"1.0","id":4,"method":"ping"}', INVALID_REQUEST, 4),
        (b'{"id":5,"method":"ping"}', INVALID_REQUEST, 5),
        (b'{"jsonrpc":"2.0","method":7}', INVALID_REQUEST, None),
        (b"42", INVALID_REQUEST, None),
        (("[" * 250 + "]" * 250).encode(), INVALID_REQUEST, None),
        (("[" * 100_000 + "]" * 100_000).encode(), INVALID_REQUEST, None),
        (
            b'{"jsonrpc":"2.0","id":6,"method":"ping","params":{"a":'
            + b"[" * 300
            + b"]" * 300
            + b"}}",
            INVALID_REQUEST,
            6,
        ),
        (
            json.dumps(
                {"jsonrpc": "2.0", "id": 11, "method": "ping", "params": {"p": "y" * MAX_BYTES}}
            ).encode(),
            INVALID_REQUEST,
            11,
        ),
    ],
)
def test_check_line_and_the_reply_each_case_gets(line: bytes, code: int, reply_id: Any) -> None:
    """The classifier, case by case (what the fuzz test only checks as "some error")."""
    if len(line) > MAX_BYTES:
        from apr_mcp.stdio import _oversized

        verdict: Any = _oversized(line[:4096], MAX_BYTES)
    else:
        verdict = check_line(line)
    assert isinstance(verdict, Rejection), verdict
    reply = json.loads(verdict.reply())
    assert reply["jsonrpc"] == "2.0" and reply["id"] == reply_id
    assert reply["error"]["code"] == code
    assert len(reply["error"]["message"]) <= 300


def test_blank_lines_and_valid_messages_pass_through() -> None:
    assert check_line(b"") is None and check_line(b"  \r\n") is None
    assert check_line(b'{"jsonrpc":"2.0","id":1,"method":"ping"}') is not None
    bom = b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"ping"}'
    assert not isinstance(check_line(bom), Rejection)
    note = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
    assert not isinstance(check_line(note), Rejection)
    assert not isinstance(check_line(b'{"jsonrpc":"2.0","id":1,"result":{}}'), Rejection)


def test_the_named_cases_over_real_stdio(server: StdioServer) -> None:
    """The issue's cases, end to end: each gets exactly its error reply, then the server serves."""
    for line in [
        b'{"jsonrpc":"2.0","id":21,"method":"ping","params":{"s":"\\ud800"}}',
        ("[" * 250 + "]" * 250).encode(),
        b"{not json",
        b'[{"jsonrpc":"2.0","id":22,"method":"ping"}]',
        b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}',
        json.dumps(
            {"jsonrpc": "2.0", "id": 23, "method": "ping", "params": {"p": "z" * MAX_BYTES * 3}}
        ).encode(),
    ]:
        (reply,) = exchange(server, line)
        assert "error" in reply
    assert "result" in server.request("tools/list")


# ----- tool arguments are validated strictly -----


@pytest.mark.parametrize(
    "arguments",
    [
        {"question": "Compare A and B", "deadline_s": True},
        {"question": "Compare A and B", "deadline_s": "5"},
        {"question": "Compare A and B", "max_subtasks": "5"},
        {"question": "Compare A and B", "max_subtasks": True},
        {"question": "Compare A and B", "max_subtasks": 2.0},
        {"question": "   \n\t "},
        {"question": ""},
    ],
)
async def test_tool_arguments_are_not_coerced(tmp_path: Path, arguments: dict[str, Any]) -> None:
    settings_ = Settings(backend="simulated", cache=False, cache_dir=tmp_path / "cache")
    server_ = create_server(settings_, run_store=RunStore(tmp_path / "runs"))
    async with Client(server_) as client:
        result = await client.call_tool("solve", arguments)
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith("Invalid arguments for solve: ") and len(text) <= 2000


async def test_whole_numbers_still_accepted(tmp_path: Path) -> None:
    settings_ = Settings(
        backend="simulated",
        cache=False,
        cache_dir=tmp_path / "cache",
        sim_ttft_s=0.001,
        sim_tokens_per_s=100_000,
    )
    server_ = create_server(settings_, run_store=RunStore(tmp_path / "runs"))
    async with Client(server_) as client:
        result = await client.call_tool(
            "decompose", {"question": "Compare Python, Go and Rust", "max_subtasks": 3}
        )
    assert not result.is_error


async def test_error_texts_are_capped(tmp_path: Path) -> None:
    """256 bad results give 256+ validation errors; the reply stays small."""
    settings_ = Settings(backend="simulated", cache=False, cache_dir=tmp_path / "cache")
    server_ = create_server(settings_, run_store=RunStore(tmp_path / "runs"))
    bad = [{"id": "!" * 60, "status": "nope", "confidence": "high"}] * 256
    async with Client(server_) as client:
        result = await client.call_tool("merge", {"question": "q" * 40_000, "results": bad})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert len(text) <= 2000 and "more characters" in text
