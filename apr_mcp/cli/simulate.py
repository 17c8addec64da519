"""``apr-mcp simulate``: serve the simulated model as an OpenAI-compatible endpoint on loopback."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import Subparsers, count, positive_float, setting

__all__ = ["DEFAULT_PORT", "register", "run"]

DEFAULT_PORT = 8799


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="serve the simulated model as an OpenAI-compatible endpoint on loopback",
        description="Serve the deterministic simulated model at http://HOST:PORT/v1 "
        "(POST /v1/chat/completions, GET /v1/models, GET /stats).",
    )
    parser.add_argument(
        "--port",
        type=setting("http_port"),
        default=DEFAULT_PORT,
        metavar="N",
        help=f"port (default {DEFAULT_PORT}; 0 = any free port)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface (default 127.0.0.1, loopback only)"
    )
    parser.add_argument(
        "--ttft",
        type=setting("sim_ttft_s"),
        metavar="SECONDS",
        help="time to first token, seconds (default APR_SIM_TTFT_S or 0.05)",
    )
    parser.add_argument(
        "--tps",
        type=positive_float,
        metavar="N",
        help="output tokens per second (default APR_SIM_TOKENS_PER_S or 400)",
    )
    parser.add_argument("--script", help="JSON file of rules: replies, latency overrides, faults")
    parser.add_argument(
        "--model",
        default="sim-1",
        help="model id reported by the server, always prefixed sim- (default sim-1)",
    )
    parser.add_argument(
        "--seed", type=count(0), default=0, help="seed of the deterministic replies"
    )
    parser.add_argument(
        "--reasoning-scale",
        type=positive_float,
        metavar="X",
        help="multiply every reply body's length (a 'thinking' model; default 1)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load_settings
    from ..llm.simulated import SimScript, SimulatedModel
    from ..simulate_server import run_simulate_server

    overrides: dict[str, Any] = {"seed": args.seed, "model_name": args.model}
    for key, value in (
        ("ttft_s", args.ttft),
        ("tokens_per_s", args.tps),
        ("reasoning_scale", args.reasoning_scale),
    ):
        if value is not None:
            overrides[key] = value
    if args.script:
        overrides["script"] = SimScript.from_file(args.script)
    # APR_SIM_* settings (latency, script) apply unless a flag overrides them.
    model = SimulatedModel.from_settings(load_settings(), **overrides)
    run_simulate_server(args.host, args.port, model)
    return 0
