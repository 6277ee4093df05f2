"""Which traces to record, from the standard ``OTEL_*`` environment.

streamcart decides before it builds a span, so a message that is not sampled
costs a branch and a random number, not a span. The rule is the one
``OTEL_TRACES_SAMPLER`` names; the SDK's sampler (:func:`sdk_sampler`) applies
the same rule to spans that user code starts on its own.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import msgspec
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from streamcart.errors import ConfigurationError

SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
DEFAULT_SAMPLER = "parentbased_always_on"  # the OpenTelemetry default
_LOW_64 = (1 << 64) - 1


class SamplingRule(msgspec.Struct, frozen=True):
    """Record a new trace with probability ``ratio``; with ``parent_based``, a
    message that carries a trace context follows its parent's decision."""

    ratio: float = 1.0
    parent_based: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SamplingRule:
        """The rule of ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG``.

        Raises:
            ConfigurationError: an unknown sampler, or a ratio outside [0, 1].
        """
        name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or DEFAULT_SAMPLER
        if name not in SAMPLERS:
            raise ConfigurationError(
                f"OTEL_TRACES_SAMPLER={name!r} is not supported; use one of {', '.join(SAMPLERS)}"
            )
        parent_based = name.startswith("parentbased_")
        if name.endswith("always_on"):
            return cls(1.0, parent_based)
        if name.endswith("always_off"):
            return cls(0.0, parent_based)
        text = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip() or "1.0"
        try:
            ratio = float(text)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise ConfigurationError(
                f"OTEL_TRACES_SAMPLER_ARG={text!r} must be a number from 0 to 1 "
                f"(the share of new traces to record)"
            )
        return cls(ratio, parent_based)

    @property
    def records_nothing(self) -> bool:
        """No span could ever be recorded: tracing is off."""
        return self.ratio <= 0.0 and not self.parent_based

    def new_trace(self) -> bool:
        """Whether to record a trace that starts here."""
        ratio = self.ratio
        return ratio >= 1.0 or (ratio > 0.0 and random.random() < ratio)

    def continued_trace(self, trace_id: int, parent_sampled: bool) -> bool:
        """Whether to record a span whose parent came with a message."""
        if self.parent_based:
            return parent_sampled
        # The TraceIdRatioBased rule: the same decision for a trace in every process.
        return trace_id & _LOW_64 < round(self.ratio * (_LOW_64 + 1))


def sdk_sampler(rule: SamplingRule) -> Sampler:
    """The SDK's own sampler for ``rule``."""
    root: Sampler
    if rule.ratio >= 1.0:
        root = ALWAYS_ON
    elif rule.ratio <= 0.0:
        root = ALWAYS_OFF
    else:
        root = TraceIdRatioBased(rule.ratio)
    return ParentBased(root) if rule.parent_based else root
