"""The README is part of the product: every setting and CLI command is documented, and the two
set-up commands are the ones CI runs."""

from pathlib import Path

from apr_mcp.cli import build_parser
from apr_mcp.config import Settings, env_name

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/pytest -q"


def test_every_setting_is_documented() -> None:
    missing = [env_name(name) for name in Settings.model_fields if f"`{env_name(name)}`" not in README]
    assert not missing, f"README lacks {missing}"


def test_every_cli_command_is_documented() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:  # type: ignore[union-attr]
        assert f"apr-mcp {name}" in README, name


def test_ci_runs_the_readme_test_command() -> None:
    assert TEST_COMMAND in README
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
