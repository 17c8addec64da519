"""The openai backend over real HTTP against the simulated server on loopback (no internet).

Faults come from a SimScript and become real HTTP behaviour (429 + Retry-After, 500, cut stream,
read timeout, junk text); the retry wrapper uses a fake sleep so nothing waits for backoff.
Cancellation over a real socket is covered by test_openai_cancel.py.
"""

from __future__ import annotations

import random

import anyio
import httpx
import pytest
from http_helpers import FakeSleep

from apr_mcp.errors import ModelTimeoutError, ServerError
from apr_mcp.llm.base import Message, ModelRequest
from apr_mcp.llm.openai_compat import OpenAICompatModel
from apr_mcp.llm.retry import RetryingModel
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
from apr_mcp.llm.structured import complete_structured
from apr_mcp.schemas import ThreadAnswer
from apr_mcp.simulate_server import serve_simulated


def sim(*rules: SimRule) -> SimulatedModel:
    return SimulatedModel(ttft_s=0.001, tokens_per_s=20_000, script=SimScript(rules=list(rules)))


def ask(text: str) -> ModelRequest:
    return ModelRequest(messages=[Message(role="user", content=text)], max_tokens=200)


async def test_streamed_answer_with_reported_usage() -> None:
    async with serve_simulated(
        sim(SimRule(pattern="capital", reply="Paris is the capital."))
    ) as url:
        model = OpenAICompatModel(base_url=url, model="sim-1")
        deltas: list[str] = []
        resp = await model.complete(ask("What is the capital of France?"), on_token=deltas.append)
        await model.aclose()
    assert resp.text == "Paris is the capital." and "".join(deltas) == resp.text
    assert resp.finish_reason == "stop" and resp.usage.reported and resp.usage.output_tokens > 0


@pytest.mark.parametrize("fault", ["429", "500", "cut"])
async def test_transient_faults_are_retried(fault: str) -> None:
    rule = SimRule(pattern="flaky", fault=fault, times=2, retry_after=0.25)  # type: ignore[arg-type]
    async with serve_simulated(sim(rule, SimRule(pattern="flaky", reply="finally"))) as url:
        sleep = FakeSleep()
        model = RetryingModel(
            OpenAICompatModel(base_url=url, model="sim-1"),
            base_delay=0.01,
            sleep=sleep,
            rng=random.Random(0),
        )
        resp = await model.complete(ask("flaky question"))
        async with httpx.AsyncClient() as client:
            stats = (await client.get(url.removesuffix("/v1") + "/stats")).json()
        await model.aclose()
    assert resp.text == "finally"
    assert len(sleep.delays) == 2 and stats["requests"] == 3
    if fault == "429":
        assert sleep.delays == [0.25, 0.25]  # Retry-After (via retry-after-ms) is the floor


async def test_persistent_500_gives_up_with_a_clear_error() -> None:
    async with serve_simulated(sim(SimRule(pattern=".", fault="500"))) as url:
        model = RetryingModel(
            OpenAICompatModel(base_url=url, model="sim-1"), max_retries=2, sleep=FakeSleep()
        )
        with pytest.raises(ServerError) as info:
            await model.complete(ask("anything"))
        await model.aclose()
    assert "openai/sim-1" in str(info.value) and "HTTP 500" in str(info.value)
    assert "after 3 attempts" in str(info.value)


async def test_read_timeout_over_http() -> None:
    async with serve_simulated(sim(SimRule(pattern=".", fault="timeout"))) as url:
        model = OpenAICompatModel(base_url=url, model="sim-1", timeout_s=0.2)
        with anyio.fail_after(5), pytest.raises(ModelTimeoutError):
            await model.complete(ask("hang"))
        await model.aclose()


async def test_structured_output_repairs_junk_over_http() -> None:
    simulated = sim(SimRule(pattern="subtask", fault="junk", times=1))
    async with serve_simulated(simulated) as url:
        model = OpenAICompatModel(base_url=url, model="sim-1")
        request = ModelRequest(
            messages=[
                Message(role="system", content="You are one worker."),
                Message(role="user", content="Your subtask: what is 6*7?"),
            ],
        )
        value, resp = await complete_structured(model, request, ThreadAnswer)
        await model.aclose()
    assert isinstance(value, ThreadAnswer) and value.answer
    assert simulated.calls == 2  # the junk answer, then the repair
    assert resp.usage.input_tokens > 0
