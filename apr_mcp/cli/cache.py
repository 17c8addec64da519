"""``apr-mcp cache stats|clear``: inspect or wipe the disk cache of model answers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._common import Subparsers

__all__ = ["register", "run"]


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("cache", help="show or clear the disk cache of model answers")
    actions = parser.add_subparsers(dest="cache_action", metavar="ACTION", required=True)
    for name, text in (
        ("stats", "entries, size and location of the cache"),
        ("clear", "delete every cached answer"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The directory comes from APR_CACHE_DIR or the config file."""
    from ..cache import ResultCache
    from ..config import load_settings

    settings = load_settings()
    # Maintenance works even with APR_CACHE=off: the user may want to inspect or wipe it.
    with ResultCache(
        settings.effective_cache_dir(), enabled=True, lock_timeout=settings.cache_lock_timeout
    ) as cache:
        if args.cache_action == "clear":
            removed = cache.clear()
            data: dict[str, Any] = {"directory": str(cache.directory), "removed": removed}
            text = f"removed {removed} entries from {cache.directory}"
        else:
            health = cache.check()
            data = cache.stats()
            data.pop("hits")
            data.pop("misses")
            data["enabled"] = settings.cache
            if not health.ok:
                data["fix"] = health.fix
            state = health.status if settings.cache else "off (APR_CACHE=off)"
            text = (
                f"directory: {data['directory']}\n"
                f"status:    {state}\n"
                f"entries:   {data['entries']}\n"
                f"size:      {data['size_bytes'] / 1e6:.1f} MB"
                f" of {data['size_limit_bytes'] / 1e6:.0f} MB"
                + (f"\nfix:       {health.fix}" if not health.ok else "")
            )
    sys.stdout.write((json.dumps(data, indent=2) if args.json else text) + "\n")
    return 0
