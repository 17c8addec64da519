"""The README and docs/ are part of the product: every setting and CLI command is documented, no
page documents a setting that does not exist, every relative link resolves, and the test command
is the one CI runs."""

import re
from pathlib import Path

from pydantic import AliasChoices

from apr_mcp.cli import _build_parser
from apr_mcp.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SETTINGS_PAGE = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/pytest -q"

# Pages linked from README and docs/index.md that other branches add; empty it once they merge.
PENDING_PAGES: set[str] = set()

_ENV_NAME = re.compile(r"\bAPR_[A-Z0-9_]*[A-Z0-9]\b")
_TABLE_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]+)`", re.MULTILINE)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _env_name(field: str) -> str:
    """``APR_<FIELD>``, or the first alias of a field read from another variable (a provider's)."""
    alias = Settings.model_fields[field].validation_alias
    first = alias.choices[0] if isinstance(alias, AliasChoices) else None
    return first if isinstance(first, str) else f"APR_{field.upper()}"


def _env_names() -> set[str]:
    return {_env_name(field) for field in Settings.model_fields}


def _code_text() -> str:
    """Every file that may legitimately read an ``APR_*`` name."""
    files = [*ROOT.glob("apr_mcp/**/*.py"), *ROOT.glob("tests/*.py")]
    files += [*ROOT.glob("benchmarks/*.py"), *ROOT.glob("examples/**/*.py")]
    files += [p for p in (ROOT / ".ci").iterdir() if p.is_file()]
    return "\n".join(p.read_text(encoding="utf-8") for p in files if p.name != "test_readme.py")


def test_every_setting_has_a_row_in_the_settings_page() -> None:
    rows = _TABLE_ROW.findall(SETTINGS_PAGE)
    missing = sorted(_env_names() - set(rows))
    assert not missing, f"docs/settings.md has no table row for {missing}"
    assert len(rows) == len(set(rows)), "a setting has two rows in docs/settings.md"


def test_every_setting_is_documented_in_readme_or_settings_page() -> None:
    documented = README + SETTINGS_PAGE
    missing = [name for name in sorted(_env_names()) if f"`{name}`" not in documented]
    assert not missing, f"README and docs/settings.md lack {missing}"


def test_no_page_documents_a_setting_that_does_not_exist() -> None:
    code = _code_text()
    for page in PAGES:
        for name in set(_ENV_NAME.findall(page.read_text(encoding="utf-8"))):
            known = name in _env_names() or re.search(rf"\b{name}\b", code) is not None
            assert known, f"{page.relative_to(ROOT)} documents {name}, which nothing reads"


def test_every_cli_command_is_documented() -> None:
    parser = _build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:  # type: ignore[union-attr]
        assert f"apr-mcp {name}" in README, name


def test_readme_stays_a_front_door() -> None:
    assert len(README.splitlines()) <= 350


def test_relative_links_resolve() -> None:
    for page in PAGES:
        for target in _LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
            assert path.exists() or rel in PENDING_PAGES, f"{page.name}: broken link {target}"


def test_ci_runs_the_readme_test_command() -> None:
    assert TEST_COMMAND in README
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
