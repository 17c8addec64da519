import pytest

from apr_mcp.llm.base import Message
from apr_mcp.prompts import load_prompt, prompt_names
from apr_mcp.tokens import count_messages, count_tokens, encoding_for, truncate_to_tokens


def test_tiktoken_loads_offline() -> None:
    # conftest refuses non-loopback connections, so this proves the offline seeding works.
    enc = encoding_for("cl100k_base")
    assert enc is not None
    assert count_tokens("hello world") == 2
    assert count_tokens("") == 0


def test_count_messages_adds_framing() -> None:
    msgs = [Message(role="system", content="be brief"), Message(role="user", content="hello world")]
    assert count_messages(msgs) == 2 + 4 + count_tokens("be brief") + 4 + count_tokens(
        "hello world"
    )


def test_truncate_to_tokens() -> None:
    text = " ".join(f"word{i}" for i in range(200))
    cut = truncate_to_tokens(text, 20)
    assert cut.endswith("…") and count_tokens(cut) <= 21
    assert truncate_to_tokens("short", 20) == "short"
    assert truncate_to_tokens("anything", 0) == ""


# Pin the variables each prompt needs: a change here is a change to every caller.
PINNED = {
    "planner": {"question", "context", "signals", "schema", "min_threads", "max_threads"},
    "solver": {"question", "context", "dependencies", "subtask"},
    "solver_json": {"question", "context", "dependencies", "subtask", "schema"},
    "lead": {"question", "results"},
    "merger": {"question", "context", "results", "mode", "schema"},
    "sequential": {"question", "context"},
    "repair": {"previous", "problem", "schema"},
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_prompt_variables_are_pinned(name: str) -> None:
    assert load_prompt(name).variables == PINNED[name]


def test_every_prompt_is_versioned_and_renders() -> None:
    for name in prompt_names():
        p = load_prompt(name)
        assert p.version and p.key == f"{name}@{p.version}"
        msgs = p.render(**{v: f"<{v}>" for v in p.variables})
        assert msgs[-1].role == "user"
        assert all("$" not in m.content or "$schema" not in m.content for m in msgs)


def test_missing_variable_fails_loudly() -> None:
    with pytest.raises(KeyError, match="question"):
        load_prompt("sequential").render(context="x")
    with pytest.raises(KeyError, match="no prompt named"):
        load_prompt("nope")
