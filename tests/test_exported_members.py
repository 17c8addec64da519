"""Keep the public surface honest (as httpx does): every name in __all__ exists, is sorted,
and importing the package does not import the MCP SDK."""

import subprocess
import sys

import apr_mcp


def test_all_names_exist_and_are_sorted() -> None:
    assert apr_mcp.__all__ == sorted(apr_mcp.__all__)
    for name in apr_mcp.__all__:
        assert hasattr(apr_mcp, name), name


def test_every_public_exception_is_in_the_one_tree() -> None:
    for name in apr_mcp.__all__:
        obj = getattr(apr_mcp, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, apr_mcp.AprError), name


def test_engine_import_does_not_pull_in_mcp() -> None:
    code = "import sys, apr_mcp; print('mcp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
