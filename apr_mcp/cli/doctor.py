"""``apr-mcp doctor``: the effective configuration and live checks (work in apr_mcp.doctor)."""

from __future__ import annotations

import argparse

from ._common import Subparsers, add_model_flags, settings_from_args

__all__ = ["register", "run"]


def register(subparsers: Subparsers) -> None:
    doctor = subparsers.add_parser(
        "doctor", help="show the effective configuration and check the endpoint"
    )
    add_model_flags(doctor)
    doctor.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import anyio

    from ..doctor import run_doctor

    return anyio.run(run_doctor, settings_from_args(args))
