"""Secrets never reach an output surface.

A canary API key, a canary HTTP token and canary URL credentials are configured; a loopback
"provider" echoes every request header (the key included) and the request URL back in its error
bodies, the way real providers and proxies sometimes do. Then every surface apr-mcp writes is
collected and searched: tool results and resources over a real stdio MCP session, traces on disk,
``solve --json`` and its stderr under ``-vv``, ``doctor``, the bench JSONL, run.json and reports,
and the ``trace view --html`` page.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from pydantic import SecretStr

from apr_mcp.config import Settings
from apr_mcp.errors import ModelHTTPError
from apr_mcp.redact import REDACTED, RedactingFilter, redact, redact_data, register_secret

KEY = "canary-key-7f3a9c2e5b1d4f6a"  # not sk- shaped: found because it is configured
TOKEN = "canary-token-5e8d1c93"
USER, PASSWORD = "apruser", "canarypass-91d2e7"
CANARIES = [KEY, TOKEN, PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]


def _leaks(text: str) -> list[str]:
    return [c for c in CANARIES if c in text]


# ----- the redaction function -----


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ('{"headers": {"Authorization": "Bearer abcdefgh12345678"}}', "abcdefgh12345678"),
        ("Authorization: Bearer abcdefgh12345678", "abcdefgh12345678"),
        ("sent Bearer eyJhbGciOiJIUzI1NiJ9.e30.x in its header", "eyJhbGciOiJIUzI1NiJ9"),
        ("proxy-authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("{'x-api-key': 'k-1234567'}", "k-1234567"),
        ('"{\\"api-key\\": \\"hunter22\\"}"', "hunter22"),
        ("api_key=zzz999 and more", "zzz999"),
        ("OPENAI_API_KEY=abc123def", "abc123def"),
        ("https://bob:s3cr3t@example.com/v1", "s3cr3t"),
        ("token in https://ghp_1a2b3c4d5e6f7g8h9i0j@github.com/x", "ghp_1a2b3c4d5e6f7g8h9i0j"),
        ("GET http://h/x?api_key=abc123&b=2", "abc123"),
        ("Incorrect API key provided: sk-proj-abcdefghijklmnopqrst", "abcdefghijklmnopqrst"),
    ],
)
def test_redact_removes_credentials(text: str, gone: str) -> None:
    out = redact(text)
    assert gone not in out and REDACTED in out


@pytest.mark.parametrize(
    "text",
    [
        "check the API key (APR_API_KEY or OPENAI_API_KEY)",
        "max_tokens=1024, 300 tokens: fine",
        "Missing or wrong bearer token (Authorization: Bearer <APR_HTTP_TOKEN>).",
        "see https://example.com/docs?page=2",
        "Compare Python, Go and Rust",
        "A basic understanding of Rust helps; the bearer instrument pays out.",
        "git clone ssh://git@github.com/org/repo.git",
    ],
)
def test_redact_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


def test_registered_secrets_are_redacted_anywhere_and_short_ones_are_not() -> None:
    register_secret("plain-looking-secret-value")
    register_secret("abc")  # too short to replace verbatim: it would blank out words
    register_secret("lm-studio")  # a local server's placeholder key, not a secret
    assert redact("it said plain-looking-secret-value twice") == f"it said {REDACTED} twice"
    assert redact("abc") == "abc"
    assert redact("Run it in lm-studio") == "Run it in lm-studio"
    data = {"a": ["x plain-looking-secret-value"], "n": 3}
    assert redact_data(data) == {"a": [f"x {REDACTED}"], "n": 3}


def test_settings_register_their_secrets_and_mask_the_base_url() -> None:
    s = Settings(
        backend="openai",
        model="m",
        api_key=SecretStr("settings-canary-0001"),
        base_url="https://u:settings-pass-0001@example.com/v1",
    )
    assert redact("echo settings-canary-0001") == f"echo {REDACTED}"
    assert "settings-pass-0001" not in json.dumps(s.masked())


def test_model_errors_are_redacted_where_they_are_born() -> None:
    body = json.dumps({"error": {"message": "bad", "headers": {"x-api-key": "born-secret-123"}}})
    exc = ModelHTTPError("bad: x-api-key: born-secret-123", backend="openai", model="m", body=body)
    assert "born-secret-123" not in str(exc) and "born-secret-123" not in (exc.body or "")
    long = ModelHTTPError("x" * 50_000, backend="openai", model="m", body="y" * 50_000)
    assert len(str(long)) < 2500  # message and body are capped where the error is born


def test_log_filter_redacts_messages_args_and_tracebacks() -> None:
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, "HTTP Request: %s", ("https://u:logpass999@h/v1",), None
    )
    try:
        raise ValueError("Authorization: Bearer tracebacksecret1")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "logpass999" not in text and "tracebacksecret1" not in text and "HTTP Request" in text


# ----- a loopback provider that echoes credentials -----


@asynccontextmanager
async def leaky_provider(sent: list[bytes]) -> AsyncIterator[int]:
    """HTTP on loopback; every request gets 401 with its headers and URL echoed in the body
    (each body sent is appended to ``sent``)."""

    async def handle(stream: SocketStream) -> None:
        async with stream:
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                try:
                    chunk = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                    return
                buffer += chunk
            head, _, rest = buffer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            length = int(headers.get("content-length", headers.get("Content-Length", "0")))
            while len(rest) < length:
                rest += await stream.receive()
            auth = headers.get("authorization", headers.get("Authorization", ""))
            echoed = {
                "error": {
                    "message": f"Incorrect API key provided: {auth.removeprefix('Bearer ')}. "
                    f"Request headers: {headers!r}",
                    "type": "invalid_request_error",
                    "request": {
                        "url": f"http://{USER}:{PASSWORD}@127.0.0.1{lines[0].split(' ')[1]}",
                        "headers": headers,
                    },
                }
            }
            body = json.dumps(echoed).encode()
            sent.append(body)
            await stream.send(
                b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield port
        finally:
            tg.cancel_scope.cancel()


def _env(tmp: Path, port: int, *, userinfo: bool) -> dict[str, str]:
    # With userinfo httpx sends Basic credentials from the URL instead of the Bearer key, so the
    # two kinds of canary are echoed by different runs.
    creds = f"{USER}:{PASSWORD}@" if userinfo else ""
    return {
        **os.environ,
        "APR_BACKEND": "openai",
        "APR_MODEL": "gpt-canary",
        "APR_API_KEY": KEY,
        "APR_HTTP_TOKEN": TOKEN,
        "APR_BASE_URL": f"http://{creds}127.0.0.1:{port}/v1",
        "APR_MAX_RETRIES": "0",
        "APR_CACHE": "off",
        "APR_RUNS_DIR": str(tmp / "runs"),
        "APR_CACHE_DIR": str(tmp / "cache"),
    }


async def _cli(env: dict[str, str], *args: str, cwd: Path) -> tuple[int, str]:
    done = await anyio.run_process(
        [sys.executable, "-m", "apr_mcp", *args], env=env, cwd=cwd, check=False
    )
    return done.returncode, done.stdout.decode() + "\n" + done.stderr.decode()


async def test_a_canary_key_reaches_no_surface(tmp_path: Path) -> None:
    surfaces: dict[str, str] = {}
    sent: list[bytes] = []
    with anyio.fail_after(120):
        async with leaky_provider(sent) as port:
            env = _env(tmp_path, port, userinfo=True)

            # The provider really does echo the key: the test would see a leak.
            code, out = await _cli(
                env,
                "-vv",
                "solve",
                "--json",
                "--strategy",
                "fixed",
                "Compare Python, Go and Rust for a CLI tool",
                cwd=tmp_path,
            )
            surfaces["solve -vv (stdout+stderr)"] = out
            assert "401" in out or "Incorrect API key" in out, out[-2000:]

            code, out = await _cli(env, "-vv", "doctor", cwd=tmp_path)
            surfaces["doctor -vv"] = out
            assert code == 1 and "endpoint" in out  # the endpoint check failed, as it should

            env = _env(tmp_path, port, userinfo=False)  # from here on the Bearer key is echoed

            bench = tmp_path / "bench"
            code, out = await _cli(
                env,
                "bench",
                "--dataset",
                "arithmetic",
                "--limit",
                "1",
                "--strategies",
                "sequential,fixed",
                "--out",
                str(bench),
                cwd=tmp_path,
            )
            surfaces["bench (stdout+stderr)"] = out
            for name in ("results.jsonl", "run.json", "report.md", "report.html"):
                surfaces[f"bench {name}"] = (bench / name).read_text(encoding="utf-8")
            assert "Incorrect API key" in surfaces["bench results.jsonl"]  # the error is there

            # MCP over real stdio: tool results, resources, the server's stderr.
            errlog = tmp_path / "server-stderr.txt"
            params = StdioServerParameters(
                command=sys.executable, args=["-m", "apr_mcp", "-vv"], env=env, cwd=str(tmp_path)
            )
            with errlog.open("w") as err:
                async with Client(stdio_client(params, errlog=err), mode="legacy") as client:
                    run = await client.call_tool(
                        "parallel_solve",
                        {
                            "question": "Compare A and B",
                            "subtasks": [
                                {"id": "a", "prompt": "Describe A"},
                                {"id": "b", "prompt": "Describe B"},
                            ],
                        },
                    )
                    surfaces["tool parallel_solve"] = run.model_dump_json()
                    solved = await client.call_tool("solve", {"question": "Compare A and B"})
                    surfaces["tool solve"] = solved.model_dump_json()
                    runs = await client.read_resource("apr://runs")
                    surfaces["apr://runs"] = runs.model_dump_json()
                    run_id = (run.structured_content or {}).get("run_id")
                    assert run_id, run
                    one = await client.read_resource(f"apr://runs/{run_id}")
                    surfaces["apr://runs/{id}"] = one.model_dump_json()
                    assert "Incorrect API key" in surfaces["apr://runs/{id}"]
            surfaces["server stderr"] = errlog.read_text(encoding="utf-8")

            html = tmp_path / "timeline.html"
            code, out = await _cli(env, "trace", "view", run_id, "--html", str(html), cwd=tmp_path)
            surfaces["trace view"] = out
            surfaces["trace view --html"] = html.read_text(encoding="utf-8")

    for trace in (tmp_path / "runs").glob("*.json"):
        surfaces[f"trace {trace.name}"] = trace.read_text(encoding="utf-8")
    assert len([s for s in surfaces if s.startswith("trace 2")]) >= 2  # traces were written

    # The provider did echo every canary, so a leak would have been seen.
    assert set(_leaks(b"".join(sent).decode())) == {KEY, PASSWORD, CANARIES[3]}
    leaks = {name: _leaks(text) for name, text in surfaces.items() if _leaks(text)}
    assert leaks == {}, leaks
    # Redaction happened where the echo was (not just because nothing was echoed).
    assert REDACTED in surfaces["tool parallel_solve"]
    assert REDACTED in surfaces["bench results.jsonl"]


async def test_answers_keep_their_code_but_lose_configured_secrets(tmp_path: Path) -> None:
    """Tool results pass the OutputGuard: a configured key the model repeats is redacted, while
    a `password = …` line of code in the answer is left as the model wrote it."""
    from apr_mcp.engine import Engine
    from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
    from apr_mcp.server import create_server
    from apr_mcp.trace import RunStore

    secret = "content-canary-key-31b7"
    settings = Settings(
        backend="simulated", cache=False, cache_dir=tmp_path / "cache", api_key=SecretStr(secret)
    )
    code = "password = get_password()\nclient = Client(api_key=os.environ['KEY'])"
    reply = f"Use this:\n{code}\nYour key {secret} is fine."
    # A ThreadAnswer-shaped reply; under the free-text thread protocol it is the answer text.
    answer = {
        "answer": reply,
        "summary": "log in",
        "confidence": 0.9,
        "settles_question": False,
        "follow_ups": [],
    }
    script = SimScript(rules=[SimRule(pattern=".", reply=answer)])
    model = SimulatedModel(ttft_s=0.001, tokens_per_s=100_000, script=script)
    store = RunStore(tmp_path / "runs")
    server = create_server(
        settings,
        engine_factory=lambda host: Engine(
            settings=settings, planner=model, solver=model, merger=model, run_store=store
        ),
        run_store=store,
    )
    async with Client(server) as client:
        result = await client.call_tool(
            "parallel_solve",
            {
                "question": "How do I log in?",
                "subtasks": [{"id": "a", "prompt": "Show login code"}],
            },
        )
        assert not result.is_error
        text = result.model_dump_json()
        run_id = (result.structured_content or {})["run_id"]
        trace = (await client.read_resource(f"apr://runs/{run_id}")).model_dump_json()
    for surface in (text, trace):
        assert secret not in surface and REDACTED in surface
        assert "password = get_password()" in surface and "api_key=os.environ" in surface


def test_an_unset_credential_stays_visibly_unset() -> None:
    # doctor prints settings as JSON: a missing key must read null, not [REDACTED].
    unset = '{"api_key": null, "http_token": null}'
    assert redact(unset) == unset
    assert redact("password = None") == "password = None"
    assert redact('"api_key": "abcd1234efgh"') == '"api_key": "[REDACTED]"'
