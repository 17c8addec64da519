"""Every snippet in the README and docs/ runs as written.

Each ```bash / ```sh / ```console / ```python block is run offline with the simulated backend, in
a temporary directory, with the venv's ``bin`` first on ``PATH`` (as after the README's quick
start, which activates the venv) and ``examples/`` linked in. A block that cannot run offline
carries ``<!-- no-run: reason -->`` on the line before its fence; it is reported as skipped with
that reason (``pytest -ra`` lists how many and why). ```json blocks must parse.

Child processes get a ``sitecustomize`` that refuses non-loopback connections, so a snippet that
would reach the network fails instead of reaching it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"bash", "sh", "console", "python"}
TIMEOUT_S = 30

_FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)\s*$")
_NO_RUN = re.compile(r"^<!--\s*no-run:\s*(.+?)\s*-->$")

_GUARD = """\
import ipaddress
import socket

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _check(address):
    if isinstance(address, tuple) and address:
        host = str(address[0])
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise RuntimeError(f"a docs snippet tried to reach the network: {address!r}")


def _guarded_connect(self, address):
    _check(address)
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    _check(address)
    return _connect_ex(self, address)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
"""


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    no_run: str | None  # the reason, when marked

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT).as_posix()}:{self.line}"


def extract(page: Path) -> list[Block]:
    """The fenced blocks of one page, with the no-run reason written just before each."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        assert end is not None, f"{page.name}:{i + 1}: unclosed code fence"
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = _NO_RUN.match(before)
        code = "\n".join(lines[i + 1 : end]) + "\n"
        blocks.append(Block(page, i + 1, opening[1].lower(), code, marker[1] if marker else None))
        i = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in extract(page)]
RUN_BLOCKS = [b for b in BLOCKS if b.lang in RUNNABLE]


def _script(block: Block) -> str:
    if block.lang != "console":
        return block.code
    # A console block shows commands after "$ " and their output; only the commands run. A command
    # continues on the next line after a trailing backslash.
    commands: list[str] = []
    continued = False
    for line in block.code.splitlines():
        if continued or line.startswith("$ "):
            commands.append(line if continued else line[2:])
            continued = line.endswith("\\")
    return "\n".join(commands) + "\n"


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(_GUARD, encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    dead_proxy = "http://127.0.0.1:9"
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(guard),
        "PYTHONUNBUFFERED": "1",
        "HTTP_PROXY": dead_proxy,
        "HTTPS_PROXY": dead_proxy,
        "ALL_PROXY": dead_proxy,
        "NO_PROXY": "127.0.0.1,localhost,::1",
        "APR_BACKEND": "simulated",
        "APR_CACHE_DIR": str(tmp_path / "cache"),
        "APR_RUNS_DIR": str(tmp_path / "runs"),
        "APR_CONFIG": str(tmp_path / "no-config.toml"),
        # A faster simulated model keeps this file well under a minute; the pipeline is the same.
        "APR_SIM_TTFT_S": "0.01",
        "APR_SIM_TOKENS_PER_S": "4000",
    }
    return work, env


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: b.id)
def test_snippet_runs(block: Block, sandbox: tuple[Path, dict[str, str]]) -> None:
    if block.no_run is not None:
        pytest.skip(f"no-run: {block.no_run}")
    work, env = sandbox
    if block.lang == "python":
        source = work / "snippet.py"
        source.write_text(block.code, encoding="utf-8")
        command = [sys.executable, str(source)]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", _script(block)]
    # Its own process group, ended whatever happens: a block that leaves something running in
    # the background (a server started with `&`) must not outlive the test.
    proc = subprocess.Popen(
        command,
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.id} ran longer than {TIMEOUT_S} s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
    assert done.returncode == 0, (
        f"{block.id} exited {done.returncode}\n--- stdout\n{done.stdout[-2000:]}"
        f"\n--- stderr\n{done.stderr[-2000:]}"
    )


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "json"], ids=lambda b: b.id)
def test_json_block_parses(block: Block) -> None:
    try:
        json.loads(block.code)
    except json.JSONDecodeError:
        # A JSONL example: every line is one JSON value.
        for line in filter(str.strip, block.code.splitlines()):
            json.loads(line)


def test_readme_host_configs_are_the_shipped_example_files() -> None:
    # Paste-ready means the README and examples/hosts/ say the same thing, so neither drifts.
    shipped = [*(ROOT / "examples" / "hosts").rglob("*.json"), ROOT / ".vscode" / "mcp.json"]
    configs = [json.loads(p.read_text(encoding="utf-8")) for p in shipped]
    readme = [b for b in BLOCKS if b.page.name == "README.md" and b.lang == "json"]
    assert len(readme) >= 3  # Claude Desktop, VS Code, Cursor
    for block in readme:
        assert json.loads(block.code) in configs, f"{block.id} is not a file in examples/hosts/"


def test_every_no_run_marker_precedes_a_runnable_block() -> None:
    marked = {(b.page, b.line) for b in BLOCKS if b.no_run is not None and b.lang in RUNNABLE}
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if _NO_RUN.match(line.strip()):
                fence = next((j for j in range(i + 1, len(lines)) if lines[j].strip()), None)
                assert fence is not None and (page, fence + 1) in marked, (
                    f"{page.name}:{i + 1}: a no-run marker must sit just before a "
                    f"```bash/sh/console/python block"
                )


def test_the_docs_have_snippets_that_run() -> None:
    # Guards the extractor itself: if it found nothing to run, every other test would pass.
    runs = [b for b in RUN_BLOCKS if b.no_run is None]
    assert len(runs) >= 5 and any(b.page.name == "README.md" for b in runs)
    assert any(b.lang == "python" for b in runs)


def test_extract_reads_markers_and_languages(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- no-run: needs a host -->\n```bash\nexit 1\n```\n\n```python\nprint(1)\n```\n"
        "\n```console\n$ echo a \\\n  b\na b\n$ true\n```\n",
        encoding="utf-8",
    )
    first, second, third = extract(page)
    assert (first.lang, first.no_run, first.code, first.line) == (
        "bash",
        "needs a host",
        "exit 1\n",
        4,
    )
    assert (second.lang, second.no_run, second.code) == ("python", None, "print(1)\n")
    assert _script(third) == "echo a \\\n  b\ntrue\n"  # commands only, continuation kept
