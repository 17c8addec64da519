"""The ``simulated`` backend: a deterministic, latency-faithful fake that models behaviour, not
answers.

Like pydantic-ai's ``TestModel``/``FunctionModel`` it returns schema-shaped placeholders and
whatever a script says; it never solves a task, reads code or calls bench code, and every text it
makes up starts with ``[sim]`` and says what a real model was asked. What it does model: latency
(:mod:`.model`), reply length (:mod:`.replies`), plan width from the engine's own heuristic
signals, thread flags and faults on request (:mod:`.script`). See docs/simulated.md.
"""

from ..base import call_token_callback
from .model import SIMULATOR_REVISION, SimReply, SimulatedModel, sim_id
from .script import FaultKind, SimRule, SimScript

__all__ = [
    "SIMULATOR_REVISION",
    "FaultKind",
    "SimReply",
    "SimRule",
    "SimScript",
    "SimulatedModel",
    "call_token_callback",
    "sim_id",
]
