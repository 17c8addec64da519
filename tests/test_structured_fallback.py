"""Structured output degrades gracefully (issue 13.1): refusals recognised by their body and
remembered per endpoint, APR_STRUCTURED, bounded schemas, and replies that copy instructions."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from http_helpers import FakeSleep, Recorder

from apr_mcp.bench.graders import JudgeVerdict
from apr_mcp.engine.debug import DebugHypotheses, DebugVerdict
from apr_mcp.engine.merge import MergeOutput
from apr_mcp.engine.meta import MetaDecision
from apr_mcp.errors import ModelOutputError, SchemaUnsupported, ServerError
from apr_mcp.llm.base import Message, Model, ModelRequest, ModelResponse, TokenCallback
from apr_mcp.llm.openai_compat import OpenAICompatModel
from apr_mcp.llm.retry import RetryingModel
from apr_mcp.llm.structured import MAX_SCHEMA_LENGTH, complete_structured, json_schema_for
from apr_mcp.schemas import Plan, ThreadAnswer

BASE = "http://llm.test/v1"

#: What llama-cpp-python's server answers to `response_format: json_schema` (seen on 0.3.x).
LLAMA_CPP_PYTHON_500 = {
    "error": {
        "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
        "'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}",
        "type": "internal_server_error",
        "param": None,
        "code": None,
    }
}

GOOD = {"answer": "4", "summary": "2+2 is 4.", "confidence": 0.9}


def completion(content: str) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "model": "m",
            "choices": [{"message": {"content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5},
        },
    )


def make(rec: Recorder, model: str = "m", **kw: Any) -> OpenAICompatModel:
    return OpenAICompatModel(
        base_url=BASE, model=model, transport=httpx.MockTransport(rec), stream=False, **kw
    )


REQ = ModelRequest(
    messages=[
        Message(role="system", content="You solve subtasks."),
        Message(role="user", content="What is two plus two, exactly?"),
    ],
    max_tokens=200,
)


async def test_a_500_naming_response_format_falls_back_to_the_prompt_and_is_remembered() -> None:
    rec = Recorder(httpx.Response(500, json=LLAMA_CPP_PYTHON_500), completion(json.dumps(GOOD)))
    # Inside the retry wrapper, as in a run: the refusal must not be retried as a server error.
    sleep = FakeSleep()
    model = RetryingModel(make(rec), sleep=sleep)
    answer, _ = await complete_structured(model, REQ, ThreadAnswer)
    assert answer.answer == "4"
    first, second = rec.bodies()
    assert "response_format" in first and "response_format" not in second
    assert "JSON schema" in second["messages"][0]["content"]  # instructions went into the prompt
    assert len(rec.requests) == 2 and sleep.delays == []

    # A new backend for the same endpoint and model (a new run, a new runtime) skips the attempt.
    again = Recorder(completion(json.dumps(GOOD)))
    await complete_structured(make(again), REQ, ThreadAnswer)
    assert len(again.requests) == 1 and "response_format" not in again.bodies()[0]
    # Another model on the same server is asked natively: the memory is per endpoint and model.
    other = Recorder(completion(json.dumps(GOOD)))
    await complete_structured(make(other, model="other"), REQ, ThreadAnswer)
    assert "response_format" in other.bodies()[0]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": {"message": "response_format json_schema is not supported"}}),
        (422, {"detail": [{"loc": ["body", "response_format"], "msg": "extra fields"}]}),
        (500, {"error": {"message": "failed to parse grammar"}}),
    ],
)
async def test_refusals_are_recognised_by_their_body(status: int, body: dict[str, Any]) -> None:
    rec = Recorder(httpx.Response(status, json=body))
    with pytest.raises(SchemaUnsupported) as info:
        await make(rec).complete(REQ.model_copy(update={"json_schema": {"type": "object"}}))
    assert info.value.status_code == status and not info.value.retryable
    assert "JSON instructions in the prompt" in str(info.value)


async def test_a_plain_500_is_still_a_retryable_server_error() -> None:
    rec = Recorder(httpx.Response(500, json={"error": {"message": "CUDA out of memory"}}))
    with pytest.raises(ServerError) as info:
        await make(rec).complete(REQ.model_copy(update={"json_schema": {"type": "object"}}))
    assert not isinstance(info.value, SchemaUnsupported) and info.value.retryable


async def test_apr_structured_prompt_never_sends_a_schema() -> None:
    rec = Recorder(completion(json.dumps(GOOD)))
    model = make(rec, structured="prompt")
    answer, _ = await complete_structured(model, REQ, ThreadAnswer)
    assert answer.answer == "4" and "response_format" not in rec.bodies()[0]
    assert model.supports_json_schema is False


async def test_apr_structured_schema_always_sends_it_and_does_not_fall_back() -> None:
    rec = Recorder(httpx.Response(500, json=LLAMA_CPP_PYTHON_500))
    model = make(rec, structured="schema")
    with pytest.raises(SchemaUnsupported):
        await complete_structured(model, REQ, ThreadAnswer)
    assert len(rec.requests) == 1
    assert model.supports_json_schema is True  # still sent next time: the user asked for it


def _unbounded(node: Any, path: str = "$") -> list[str]:
    """Paths of arrays without maxItems and free strings without maxLength in a schema."""
    found: list[str] = []
    if isinstance(node, dict):
        kinds = node.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if "array" in kinds and "maxItems" not in node:
            found.append(path)
        if "string" in kinds and "maxLength" not in node and not {"enum", "const"} & node.keys():
            found.append(path)
        for key, value in node.items():
            found += _unbounded(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += _unbounded(item, f"{path}[{i}]")
    return found


@pytest.mark.parametrize(
    "output_type",
    [Plan, ThreadAnswer, MergeOutput, DebugHypotheses, DebugVerdict, MetaDecision, JudgeVerdict],
)
def test_every_schema_a_model_sees_bounds_its_lists_and_strings(output_type: type) -> None:
    schema = json_schema_for(output_type)
    assert _unbounded(schema) == []


def _lengths(node: Any) -> list[int]:
    if isinstance(node, dict):
        own = [node["maxLength"]] if "maxLength" in node else []
        return own + [n for value in node.values() for n in _lengths(value)]
    if isinstance(node, list):
        return [n for item in node for n in _lengths(item)]
    return []


@pytest.mark.parametrize(
    "output_type",
    [Plan, ThreadAnswer, MergeOutput, DebugHypotheses, DebugVerdict, MetaDecision, JudgeVerdict],
)
def test_no_string_bound_breaks_a_grammar(output_type: type) -> None:
    # llama.cpp grammars refuse long x{0,n} repetitions and llama-cpp-python's server dies on
    # them (a 2000-character answer killed it here): Subtask.prompt allows 20,000 but is
    # shown 1,000.
    assert max(_lengths(json_schema_for(output_type))) <= MAX_SCHEMA_LENGTH == 1000


def test_answer_fields_get_the_most_room_and_thread_lists_stay_short() -> None:
    thread = json_schema_for(ThreadAnswer)["properties"]
    assert thread["answer"]["maxLength"] == MAX_SCHEMA_LENGTH > thread["summary"]["maxLength"]
    assert thread["follow_ups"]["maxItems"] <= 8
    assert json_schema_for(MergeOutput)["properties"]["answer"]["maxLength"] == MAX_SCHEMA_LENGTH
    # Validation keeps the type's own bounds: a longer (prompt-mode) answer is still valid.
    assert ThreadAnswer(answer="x" * 5000).answer


class Scripted(Model):
    backend = "fake"
    model_name = "f1"
    supports_json_schema = True

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.requests: list[ModelRequest] = []

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        self.requests.append(request)
        return ModelResponse(text=self.replies.pop(0), backend="fake", model="f1")


@pytest.mark.parametrize(
    "copied",
    [
        "The full answer to the subtask.",  # the schema's own description, as seen on SmolLM2
        "the full answer to the subtask",
        "What is two plus two, exactly?",  # the prompt, repeated
    ],
)
async def test_a_reply_that_copies_the_instructions_takes_the_repair_path(copied: str) -> None:
    model = Scripted(json.dumps({"answer": copied}), json.dumps(GOOD))
    answer, _ = await complete_structured(model, REQ, ThreadAnswer)
    assert answer.answer == "4" and len(model.requests) == 2
    repair = model.requests[1].messages[-1].content
    assert "copies the instructions" in repair and "answer" in repair


async def test_copying_twice_is_an_output_error() -> None:
    echo = json.dumps({"answer": "The full answer to the subtask."})
    with pytest.raises(ModelOutputError) as info:
        await complete_structured(Scripted(echo, echo), REQ, ThreadAnswer)
    assert "copies the instructions" in str(info.value)


async def test_short_and_real_answers_are_not_taken_for_copies() -> None:
    reply = {"answer": "4", "summary": "Two plus two is exactly four.", "follow_ups": []}
    answer, _ = await complete_structured(Scripted(json.dumps(reply)), REQ, ThreadAnswer)
    assert answer.summary == "Two plus two is exactly four."
