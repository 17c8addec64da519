"""The JSON schema of an output type as prompt text, computed once per type.

Generating a pydantic JSON schema costs about a millisecond of CPU; every thread's prompt needs
one, so at 64 threads that alone would be visible in the engine's overhead benchmark.
"""

from __future__ import annotations

import functools
import json

from pydantic import BaseModel

__all__ = ["schema_text"]


@functools.cache
def schema_text(output_type: type[BaseModel]) -> str:
    """``output_type``'s JSON schema, serialised compactly (cached; types are immutable here)."""
    return json.dumps(output_type.model_json_schema(), separators=(",", ":"))
