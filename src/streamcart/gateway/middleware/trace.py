"""``X-Trace-Id`` on every response.

A ``before_send`` hook rather than a middleware: litestar runs middleware only
for matched routes, while this hook sees every response, a 404 for an unknown
path or a 413 included. The id is the request's trace id
(:mod:`.tracing` sets it), else a random one.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

HEADER = "X-Trace-Id"
_STATE_KEY = "trace_id"


def trace_id_of(scope: Scope) -> str:
    """The request's trace id, made on first use and kept in the scope's state."""
    state: dict[str, Any] = scope.setdefault("state", {})
    trace_id = state.get(_STATE_KEY)
    if not isinstance(trace_id, str):
        trace_id = state[_STATE_KEY] = uuid.uuid4().hex
    return trace_id


def set_trace_id(scope: Scope, trace_id: str) -> None:
    """Make ``trace_id`` the id the response and error bodies show."""
    scope.setdefault("state", {})[_STATE_KEY] = trace_id


async def add_trace_id(message: Message, scope: Scope) -> None:
    """A ``before_send`` hook: stamps the response's start with the trace id."""
    if message["type"] == "http.response.start":
        MutableScopeHeaders.from_message(message)[HEADER] = trace_id_of(scope)
