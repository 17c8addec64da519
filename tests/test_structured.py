"""Structured output: native schema, prompt fallback, tolerant extraction, one repair, clear
error."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from apr_mcp.errors import ModelHTTPError, ModelOutputError
from apr_mcp.llm._http import emit
from apr_mcp.llm.base import Message, Model, ModelRequest, ModelResponse, TokenCallback, Usage
from apr_mcp.llm.openai_compat import OpenAICompatModel
from apr_mcp.llm.structured import (
    DEFAULT_MAX_ITEMS,
    DEFAULT_MAX_LENGTH,
    complete_structured,
    extract_json,
    json_schema_for,
)
from apr_mcp.schemas import Plan, ThreadAnswer


class Scripted(Model):
    """Answers with the scripted texts (or raises the scripted errors), recording each request."""

    backend = "fake"
    model_name = "f1"

    def __init__(self, *replies: str | Exception, native: bool = False) -> None:
        self.replies = list(replies)
        self.requests: list[ModelRequest] = []
        self.supports_json_schema = native

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        await emit(on_token, reply)
        return ModelResponse(
            text=reply,
            usage=Usage(input_tokens=10, output_tokens=len(reply), reported=True),
            backend="fake",
            model="f1",
            latency_s=0.5,
        )


REQ = ModelRequest(
    messages=[
        Message(role="system", content="You solve subtasks."),
        Message(role="user", content="2+2?"),
    ],
    purpose="solver",
    prompt_version="solver@1",
)
GOOD = {"answer": "4", "summary": "Two plus two is four.", "confidence": 0.9}


async def test_native_schema_when_supported() -> None:
    model = Scripted(json.dumps(GOOD), native=True)
    value, resp = await complete_structured(model, REQ, ThreadAnswer)
    assert value == ThreadAnswer.model_validate(GOOD)
    (sent,) = model.requests
    assert sent.json_schema == json_schema_for(ThreadAnswer) and sent.schema_name == "ThreadAnswer"
    assert sent.messages == REQ.messages  # no instructions added in native mode
    assert sent.prompt_version == "solver@1" and sent.purpose == "solver"
    assert resp.usage.output_tokens == len(json.dumps(GOOD))


async def test_prompt_mode_adds_schema_instructions_once() -> None:
    model = Scripted(json.dumps(GOOD), json.dumps(GOOD))
    await complete_structured(model, REQ, ThreadAnswer)
    system = model.requests[0].messages[0]
    assert system.role == "system" and system.content.startswith("You solve subtasks.")
    assert '"confidence"' in system.content and "JSON" in system.content
    # A prompt that already renders the schema (like the shipped ones) is left alone.
    rendered = ModelRequest(
        messages=[
            Message(role="system", content=json.dumps(json_schema_for(ThreadAnswer))),
            Message(role="user", content="q"),
        ]
    )
    await complete_structured(model, rendered, ThreadAnswer)
    assert model.requests[1].messages == rendered.messages


async def test_explicit_schema_name_is_kept() -> None:
    model = Scripted(json.dumps(GOOD), native=True)
    await complete_structured(model, REQ.model_copy(update={"schema_name": "Answer"}), ThreadAnswer)
    assert model.requests[0].schema_name == "Answer"


@pytest.mark.parametrize(
    "text",
    [
        "```json\n" + json.dumps(GOOD, indent=2) + "\n```",
        "Sure! Here is the result:\n" + json.dumps(GOOD) + "\nLet me know if you need more.",
        '<think>the user wants {"answer": "5"}? no</think>\n' + json.dumps(GOOD),
        '{"answer": "4", "summary": "Two plus two is four.", "confidence": 0.9,}',
        "{'answer': '4', 'summary': 'Two plus two is four.', 'confidence': 0.9}",
        "See step [1] first. " + json.dumps(GOOD),
    ],
    ids=["fenced", "prose", "think", "trailing-comma", "python-literal", "earlier-brackets"],
)
async def test_tolerant_extraction(text: str) -> None:
    model = Scripted(text)
    value, _ = await complete_structured(model, REQ, ThreadAnswer)
    assert value == ThreadAnswer.model_validate(GOOD)
    assert len(model.requests) == 1


def test_extract_json_errors_say_what_was_seen() -> None:
    with pytest.raises(ValueError, match="no JSON object found.*'I cannot"):
        extract_json("I cannot answer that.")
    with pytest.raises(ValueError, match="empty"):
        extract_json("  ")
    assert extract_json('text {"a": "}"} more') == {"a": "}"}


async def test_invalid_then_repaired() -> None:
    bad = '{"summary": "missing the answer field"}'
    tokens: list[str] = []
    model = Scripted(bad, json.dumps(GOOD))
    value, resp = await complete_structured(model, REQ, ThreadAnswer, on_token=tokens.append)
    assert value.answer == "4"
    assert len(model.requests) == 2 and tokens == [bad, json.dumps(GOOD)]
    repair = model.requests[1]
    joined = "\n".join(m.content for m in repair.messages)
    assert bad in joined and "answer: Field required" in joined and '"confidence"' in joined
    assert repair.prompt_version == "solver@1+repair@1" and repair.schema_name == "ThreadAnswer"
    assert resp.usage.input_tokens == 20 and resp.usage.output_tokens == len(bad) + len(
        json.dumps(GOOD)
    )
    # Two calls, two contexts: the larger one, not their sum (the repair does not resend the first).
    assert resp.max_context_tokens == 10 + max(len(bad), len(json.dumps(GOOD)))
    assert resp.latency_s == pytest.approx(1.0)


def test_max_context_is_prompt_plus_output_and_nothing_for_a_cache_hit() -> None:
    usage = Usage(input_tokens=300, output_tokens=120)
    assert ModelResponse(text="x", usage=usage).max_context_tokens == 420
    # A hit keeps the original usage (tokens are reported as spent once) but held no context.
    assert ModelResponse(text="x", usage=usage, cached=True).max_context_tokens == 0


async def test_invalid_twice_is_a_clear_error() -> None:
    model = Scripted("I think the answer is 4.", "Still 4, honestly.")
    with pytest.raises(ModelOutputError) as info:
        await complete_structured(model, REQ, Plan)
    text = str(info.value)
    assert (
        "fake/f1" in text and "Plan" in text and "repair" in text and "no JSON object found" in text
    )
    assert info.value.body == "Still 4, honestly."
    assert len(model.requests) == 2


async def test_backend_output_error_gets_the_repair_attempt() -> None:
    model = Scripted(ModelOutputError("empty answer", backend="fake", model="f1"), json.dumps(GOOD))
    value, _ = await complete_structured(model, REQ, ThreadAnswer)
    assert value.answer == "4" and "empty answer" in model.requests[1].messages[-1].content


async def test_other_backend_errors_propagate_unchanged() -> None:
    err = ModelHTTPError("forbidden", status_code=403)
    model = Scripted(err, native=True)
    with pytest.raises(ModelHTTPError) as info:
        await complete_structured(model, REQ, ThreadAnswer)
    assert info.value is err and model.supports_json_schema is True


async def test_response_format_rejection_falls_back_to_prompt_mode() -> None:
    seen: list[dict[str, Any]] = []
    reply = {"choices": [{"message": {"content": json.dumps(GOOD)}, "finish_reason": "stop"}]}

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        if "response_format" in body:
            return httpx.Response(
                400,
                json={
                    "error": {
                        "message": "Invalid parameter: 'response_format' of type 'json_schema' is "
                        "not supported with this model."
                    }
                },
            )
        return httpx.Response(200, json=reply)

    model = OpenAICompatModel(
        base_url="http://x.test/v1", model="m", stream=False, transport=httpx.MockTransport(handler)
    )
    value, _ = await complete_structured(model, REQ, ThreadAnswer)
    assert value.answer == "4"
    assert len(seen) == 2 and "response_format" not in seen[1]
    assert '"confidence"' in seen[1]["messages"][0]["content"]  # instructions now in the prompt
    assert model.supports_json_schema is False
    await complete_structured(model, REQ, ThreadAnswer)
    assert len(seen) == 3  # remembered: no more rejected attempts


class Inner(BaseModel):
    title: str
    score: int


class Outer(BaseModel):
    items: list[Inner]
    best: Inner | None = None


def test_json_schema_for_inlines_defs_and_drops_titles() -> None:
    schema = json_schema_for(Outer)
    text = json.dumps(schema)
    assert "$defs" not in text and "$ref" not in text
    item = schema["properties"]["items"]["items"]
    # A field named "title" survives (bounded like every free string a model sees).
    assert item["properties"]["title"] == {"type": "string", "maxLength": DEFAULT_MAX_LENGTH}
    assert "title" not in schema and item["required"] == ["title", "score"]
    plan = json_schema_for(Plan)
    assert (
        "$ref" not in json.dumps(plan)
        and "prompt" in plan["properties"]["subtasks"]["items"]["properties"]
    )


class Node(BaseModel):
    name: str
    children: list[Node] = []


def test_json_schema_for_keeps_defs_for_recursive_types() -> None:
    schema = json_schema_for(Node)
    assert "Node" in schema["$defs"]  # a recursive type cannot be inlined; its refs stay valid
    value = Node.model_validate({"name": "a", "children": [{"name": "b"}]})
    assert value.children[0].name == "b"


def test_json_schema_for_is_built_once_and_returns_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    from apr_mcp.llm import structured

    assert json_schema_for(list[int]) == {
        "type": "array",
        "items": {"type": "integer"},
        "maxItems": DEFAULT_MAX_ITEMS,
    }
    first = json_schema_for(Outer)
    built: list[object] = []
    monkeypatch.setattr(structured, "_build_schema", lambda t: built.append(t) or {})  # type: ignore[func-returns-value]
    first["properties"]["items"]["type"] = "mutated by a caller"
    second = json_schema_for(Outer)
    assert built == []  # served from the per-type cache, not regenerated
    assert second["properties"]["items"]["type"] == "array"  # the caller's change did not leak
