"""Structured (JSON-schema) output on top of any :class:`~apr_mcp.llm.base.Model`.

The ladder, from best to last resort:

1. **Native**: where ``model.supports_json_schema``, the schema travels as the provider's
   structured-output format. If the provider refuses that format (400/422, or a 500 as from
   llama-cpp-python, whose body names ``response_format``, ``json_schema`` or a grammar), the
   endpoint is marked unsupported for the rest of the process and the call is made again in
   prompt mode; that retry is not counted as the repair. ``APR_STRUCTURED`` (``auto``,
   ``schema``, ``prompt``) is applied by the backend: ``prompt`` never sends the schema natively,
   ``schema`` always does (and a refusal is then an error).
2. **Prompt**: JSON instructions with the schema go into the system message (unless the messages
   already carry a rendered schema, as the shipped prompts do).
3. **Tolerant extraction** (:func:`extract_json`): ``<think>`` blocks, code fences, prose around
   the JSON, trailing commas, Python-style literals.
4. **One repair call** with ``prompts/repair.toml``: the bad output and what was wrong with it.
5. Then :class:`~apr_mcp.errors.ModelOutputError`, naming backend, model, schema and the problem.

Every schema a model sees is bounded (:func:`bound_schema`): each list has ``maxItems`` and each
string ``maxLength``, so that a small model whose output a server forces to the schema cannot
repeat list items until ``max_tokens`` and lose its answer. A reply whose string fields only
copy a schema description or the prompt ("The full answer to the subtask.") is not an answer:
it fails validation and takes the repair path.
"""

from __future__ import annotations

import ast
import copy
import json
import logging
import re
from collections.abc import Iterator
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from ..errors import ModelHTTPError, ModelOutputError, SchemaUnsupported
from ..prompts import load_prompt
from .base import Message, Model, ModelRequest, ModelResponse, TokenCallback, Usage
from .usable import usable_when

__all__ = [
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_MAX_LENGTH",
    "MAX_SCHEMA_LENGTH",
    "bound_schema",
    "complete_structured",
    "extract_json",
    "iter_json_candidates",
    "json_schema_for",
    "schema_instructions",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_THINK = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*(?:json5?|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_MAX_PREVIOUS_CHARS = 8000

#: ``maxItems`` given to a list whose type sets none: enough for any list apr-mcp asks for.
DEFAULT_MAX_ITEMS = 16
#: ``maxLength`` given to a string whose type sets none (long texts declare their own).
DEFAULT_MAX_LENGTH = 500
#: The largest ``maxLength`` a model is shown. Servers that enforce a schema with a llama.cpp
#: grammar expand ``x{0,n}`` into nested rules and refuse a grammar whose repetitions add up
#: ("exceeds sane defaults"); llama-cpp-python's server then dies. Measured with its
#: ``json_object`` + schema mode: ThreadAnswer with a 2000-character answer killed it; with
#: 1000 (and 500 for the other strings) every schema apr-mcp sends compiled and answered.
MAX_SCHEMA_LENGTH = 1000


# ----- schema -----


def json_schema_for(output_type: Any) -> dict[str, Any]:
    """The JSON schema of ``output_type`` with ``$ref``\\ s inlined and titles dropped.

    Weak servers (llama.cpp grammars, older vLLM) handle a self-contained schema better than one
    with ``$defs``; titles only cost prompt tokens. Recursive types keep their ``$defs``.
    Returns a fresh copy the caller may change (the generated schema is cached per type).
    """
    return copy.deepcopy(_schema_and_adapter(output_type)[0])


# Generating a schema costs ~0.3-2 ms per call and an engine run makes one call per thread, so
# each type's schema and validator are built once. Keyed by the type itself (types are hashable;
# the few used are module-level classes, so the cache stays small). The cached schema is shared:
# complete_structured only reads it (httpx serialises it; CachedModel hashes it).
_SCHEMAS: dict[Any, tuple[dict[str, Any], TypeAdapter[Any]]] = {}


def _schema_and_adapter(output_type: Any) -> tuple[dict[str, Any], TypeAdapter[Any]]:
    try:
        return _SCHEMAS[output_type]
    except KeyError:
        pass
    except TypeError:  # an unhashable type expression: nothing to cache by
        return _build_schema(output_type), TypeAdapter(output_type)
    entry = (_build_schema(output_type), TypeAdapter(output_type))
    _SCHEMAS[output_type] = entry
    return entry


def bound_schema(schema: Any) -> Any:
    """``schema`` with ``maxItems`` on every array and ``maxLength`` on every free string.

    Bounds the type already declares are kept, up to :data:`MAX_SCHEMA_LENGTH` for strings; the
    defaults (:data:`DEFAULT_MAX_ITEMS`, :data:`DEFAULT_MAX_LENGTH`) fill the gaps. Strings
    constrained otherwise (``enum``, ``const``, ``format``) are left alone. Only what the model
    is shown changes: validation keeps the type's own bounds. Changes ``schema`` in place and
    returns it.
    """
    if isinstance(schema, list):
        for item in schema:
            bound_schema(item)
        return schema
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "array" in kinds and "maxItems" not in schema:
        schema["maxItems"] = DEFAULT_MAX_ITEMS
    if "string" in kinds and not {"enum", "const", "format"} & schema.keys():
        schema["maxLength"] = min(schema.get("maxLength", DEFAULT_MAX_LENGTH), MAX_SCHEMA_LENGTH)
    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(
            value, dict
        ):
            for sub in value.values():
                bound_schema(sub)
        elif key in ("items", "anyOf", "oneOf", "allOf", "prefixItems", "additionalProperties"):
            bound_schema(value)
    return schema


def _build_schema(output_type: Any) -> dict[str, Any]:
    return bound_schema(_inlined_schema(output_type))  # type: ignore[no-any-return]


def _inlined_schema(output_type: Any) -> dict[str, Any]:
    schema = TypeAdapter(output_type).json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [inline(item, stack) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in stack or name not in defs:
                raise _Recursive
            target = inline(copy.deepcopy(defs[name]), (*stack, name))
            extra = {k: inline(v, stack) for k, v in node.items() if k != "$ref"}
            return {**target, **extra}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "title" and isinstance(value, str):
                continue
            if key == "properties" and isinstance(value, dict):
                out[key] = {name: inline(sub, stack) for name, sub in value.items()}
            else:
                out[key] = inline(value, stack)
        return out

    try:
        result: dict[str, Any] = inline(schema, ())
    except _Recursive:
        return TypeAdapter(output_type).json_schema()
    return result


class _Recursive(Exception):
    pass


def schema_instructions(schema: dict[str, Any]) -> str:
    """The JSON instructions put into the prompt when the provider has no native schema mode."""
    return (
        "Answer with a single JSON value only — no prose, no code fences — that matches this "
        f"JSON schema:\n{json.dumps(schema, separators=(',', ':'))}"
    )


def _with_instructions(messages: list[Message], schema: dict[str, Any]) -> list[Message]:
    # The shipped prompts already render the schema (`$schema`); don't send it twice.
    if any('"properties"' in m.content for m in messages):
        return messages
    text = schema_instructions(schema)
    if messages and messages[0].role == "system":
        first = Message(role="system", content=f"{messages[0].content}\n\n{text}")
        return [first, *messages[1:]]
    return [Message(role="system", content=text), *messages]


# ----- extraction -----


def extract_json(text: str) -> Any:
    """The JSON value in a model's answer, tolerating the usual wrapping.

    Tries, in order: the whole text; each fenced code block; each balanced ``{...}``/``[...]``
    from the first opening bracket on. Each candidate is tried as strict JSON, then with trailing
    commas removed, then as a Python literal (single quotes, ``True``/``None``). Raises
    ``ValueError`` saying what was seen when nothing parses.
    """
    for value in iter_json_candidates(text):
        return value
    cleaned = _THINK.sub("", text).strip()
    if not cleaned:
        raise ValueError("the answer is empty")
    raise ValueError(f"no JSON object found in the answer (starts with {cleaned[:80]!r})")


def iter_json_candidates(text: str) -> Iterator[Any]:
    """Every JSON value :func:`extract_json` would consider, best guess first."""
    cleaned = _THINK.sub("", text).strip()
    candidates = [cleaned, *(m.group(1).strip() for m in _FENCE.finditer(cleaned))]
    candidates += _balanced_spans(cleaned)
    for candidate in candidates:
        if not candidate:
            continue
        try:
            yield _loads_lenient(candidate)
        except ValueError:
            continue


def _loads_lenient(candidate: str) -> Any:
    try:
        return json.loads(candidate)
    except ValueError:
        pass
    without_commas = _TRAILING_COMMA.sub(r"\1", candidate)
    try:
        return json.loads(without_commas)
    except ValueError:
        pass
    if candidate[:1] in "{[" and len(candidate) < 200_000:
        try:
            value = ast.literal_eval(without_commas)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            raise ValueError("not JSON") from None
        if isinstance(value, (dict, list)):
            return json.loads(json.dumps(value, default=str))
    raise ValueError("not JSON")


def _balanced_spans(text: str, limit: int = 8) -> list[str]:
    """Up to ``limit`` balanced bracket spans, scanning strings correctly, outermost first."""
    spans: list[str] = []
    start = 0
    while len(spans) < limit:
        positions = [p for p in (text.find("{", start), text.find("[", start)) if p >= 0]
        if not positions:
            break
        begin = min(positions)
        end = _match(text, begin)
        if end is None:
            start = begin + 1
            continue
        spans.append(text[begin : end + 1])
        start = begin + 1  # a later start may be the real object when this span is prose
    return spans


def _match(text: str, begin: int) -> int | None:
    depth = 0
    quote: str | None = None
    escaped = False
    for i in range(begin, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            # Apostrophes in prose inside a JSON string never reach here; outside strings a
            # single quote only opens a string in Python-style output.
            quote = ch if ch == '"' or text[i - 1 : i] in (" ", "{", "[", ",", ":") else None
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i
    return None


# ----- the call -----


async def complete_structured(
    model: Model,
    request: ModelRequest,
    output_type: type[T],
    *,
    on_token: TokenCallback | None = None,
) -> tuple[T, ModelResponse]:
    """Ask ``model`` for an instance of ``output_type`` (a pydantic model or any pydantic type).

    ``request.schema_name`` is used if the caller set it, else ``output_type.__name__``. Returns
    the validated value and the last response, whose ``usage`` and ``latency_s`` sum every
    attempt (its ``max_context_tokens`` is the largest single attempt's). Raises
    :class:`~apr_mcp.errors.ModelOutputError` if even the repair fails, and any
    backend error unchanged.
    """
    cached_schema, cached_adapter = _schema_and_adapter(output_type)
    schema = cached_schema  # shared: read here, never modified
    name = request.schema_name
    if name == ModelRequest.model_fields["schema_name"].default:
        name = getattr(output_type, "__name__", name)
    adapter: TypeAdapter[T] = cached_adapter
    responses: list[ModelResponse] = []

    async def call(messages: list[Message], version: str) -> ModelResponse:
        native = model.supports_json_schema
        req = request.model_copy(
            update={
                "messages": messages if native else _with_instructions(messages, schema),
                "json_schema": schema,
                "schema_name": name,
                "prompt_version": version,
            }
        )
        try:
            # The cache keeps (and serves) only replies that validate as ``output_type``.
            with usable_when(lambda text: _parse(text, adapter)[0] is not None):
                resp = await model.complete(req, on_token=on_token)
        except ModelHTTPError as err:
            if not (native and _rejects_schema(err)):
                raise
            model.supports_json_schema = False
            if model.supports_json_schema:  # APR_STRUCTURED=schema: no fallback wanted
                raise
            log.info(
                "%s/%s rejected native JSON schema; retrying with JSON in the prompt",
                err.backend,
                err.model,
            )
            return await call(messages, version)
        responses.append(resp)
        return resp

    problem: str
    previous: str
    echoes = _echo_targets(schema, request.messages)
    try:
        first = await call(request.messages, request.prompt_version)
        value, problem = _parse(first.text, adapter, echoes)
        if value is not None:
            return value[0], _summed(responses)
        previous = first.text
    except ModelOutputError as err:
        # Empty, junk or cut off: the repair prompt (JSON only, nothing else) often fixes that.
        problem, previous = err.message, err.body or ""

    log.info(
        "%s/%s: invalid %s output (%s); one repair attempt",
        model.backend,
        model.model_name,
        name,
        problem,
    )
    repair = load_prompt("repair")
    messages = repair.render(
        schema=json.dumps(schema, indent=1),
        previous=previous[:_MAX_PREVIOUS_CHARS] or "(nothing)",
        problem=problem,
    )
    version = f"{request.prompt_version}+{repair.key}" if request.prompt_version else repair.key
    try:
        second = await call(messages, version)
    except ModelOutputError as err:
        raise _final_error(model, name, err.message, err.body) from err
    value, problem = _parse(second.text, adapter, echoes)
    if value is None:
        raise _final_error(model, name, problem, second.text)
    return value[0], _summed(responses)


def _parse(
    text: str, adapter: TypeAdapter[T], echoes: frozenset[str] = frozenset()
) -> tuple[tuple[T] | None, str]:
    """``((value,), "")`` or ``(None, what was wrong)``; the first candidate that validates and
    answers (does not just copy a description or the prompt, see :func:`_echo_targets`) wins."""
    first_error: ValidationError | None = None
    echoed: str | None = None
    for data in iter_json_candidates(text):
        try:
            value = adapter.validate_python(data)
        except ValidationError as exc:
            first_error = first_error or exc
            continue
        copied = _copied_field(data, echoes)
        if copied is None:
            return (value,), ""
        echoed = echoed or copied
    if echoed is not None:
        return None, (
            f"field {echoed} copies the instructions (a schema description or the prompt) "
            "instead of answering"
        )
    if first_error is None:
        try:
            extract_json(text)
        except ValueError as exc:
            return None, str(exc)
        return None, "no JSON found"  # unreachable: a candidate would have parsed
    details = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
        for e in first_error.errors()[:8]
    )
    return None, f"the JSON does not match the schema: {details}"


def _rejects_schema(err: ModelHTTPError) -> bool:
    if isinstance(err, SchemaUnsupported):  # the backend recognised the refusal
        return True
    if err.status_code not in (400, 422, 500, 501):
        return False
    text = f"{err.message} {err.body or ''}".lower()
    return any(word in text for word in ("response_format", "json_schema", "grammar"))


#: Shorter strings are never taken for a copy (ids, "yes", a number in words).
_MIN_ECHO_CHARS = 12
_PUNCT = " \t\n.:;,!?\"'`*"


def _norm(text: str) -> str:
    return " ".join(text.lower().split()).strip(_PUNCT)


def _echo_targets(schema: dict[str, Any], messages: list[Message]) -> frozenset[str]:
    """The texts a reply's fields must not merely repeat: every description in the schema and
    each whole user or system message, normalised (case, spacing, end punctuation)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            description = node.get("description")
            if isinstance(description, str):
                found.add(_norm(description))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    found.update(_norm(m.content) for m in messages if m.role != "assistant")
    return frozenset(t for t in found if len(t) >= _MIN_ECHO_CHARS)


def _copied_field(data: Any, echoes: frozenset[str], path: str = "") -> str | None:
    """The path of the first string field in ``data`` that only repeats an echo target."""
    if isinstance(data, str):
        copied = len(data) >= _MIN_ECHO_CHARS and _norm(data) in echoes
        return (path or "(root)") if copied else None
    if isinstance(data, dict):
        items: Any = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return None
    for key, value in items:
        found = _copied_field(value, echoes, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _final_error(model: Model, name: str, problem: str, body: str | None) -> ModelOutputError:
    return ModelOutputError(
        f"no valid {name} JSON after one repair attempt: {problem}",
        backend=model.backend,
        model=model.model_name,
        body=body,
    )


def _summed(responses: list[ModelResponse]) -> ModelResponse:
    last = responses[-1]
    if len(responses) == 1:
        return last
    usage = Usage(
        input_tokens=sum(r.usage.input_tokens for r in responses),
        output_tokens=sum(r.usage.output_tokens for r in responses),
        reported=all(r.usage.reported for r in responses),
    )
    return last.model_copy(
        update={
            "usage": usage,
            "latency_s": sum(r.latency_s for r in responses),
            "ttft_s": responses[0].ttft_s,
            "cached": all(r.cached for r in responses),
            # Two calls, two contexts: the repair is a new conversation, not the first continued.
            "peak_context_tokens": max(r.max_context_tokens for r in responses),
        }
    )
