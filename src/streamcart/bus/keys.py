"""Every Redis key name streamcart uses, built in one place.

Stream names are the public contract (contract section 3). A service's own
state lives under the hash tag ``{<ns>:<service>}`` so that a transaction or
script touching several of its keys stays inside one Redis Cluster slot.
"""

from __future__ import annotations


def topic_of(message_type: str) -> str:
    """The topic of an event type: its first dotted segment."""
    return message_type.partition(".")[0]


class Keys:
    """Key names under one namespace."""

    __slots__ = ("namespace",)

    def __init__(self, namespace: str = "sc") -> None:
        self.namespace = namespace

    # -- streams (contract) -------------------------------------------------
    def events(self, topic: str) -> str:
        return f"{self.namespace}:events:{topic}"

    def inbox(self, service: str) -> str:
        return f"{self.namespace}:inbox:{service}"

    def dlq(self, service: str) -> str:
        return f"{self.namespace}:dlq:{service}"

    def service_of_inbox(self, stream: str) -> str | None:
        """The service whose inbox ``stream`` is, or ``None`` for any other stream."""
        prefix = f"{self.namespace}:inbox:"
        return stream[len(prefix) :] if stream.startswith(prefix) else None

    def stream_for(self, message_type: str) -> str:
        """The topic stream an event of this type is published to."""
        return self.events(topic_of(message_type))

    def destination(self, message_type: str, to: str | None = None) -> str:
        """Where a message goes: service ``to``'s inbox, else its type's topic stream."""
        return self.inbox(to) if to is not None else self.stream_for(message_type)

    # -- a service's own slot -----------------------------------------------
    def service_tag(self, service: str) -> str:
        return f"{{{self.namespace}:{service}}}"

    def state(self, service: str, *parts: str) -> str:
        """A key in the service's own hash slot, for its state."""
        return ":".join((self.service_tag(service), *parts))

    def dedup_index(self, service: str) -> str:
        """Sorted set of the dedup window's buckets (see ``bus/dedup.py``)."""
        return self.state(service, "dedup")

    def dedup_counts(self, service: str) -> str:
        """Hash: bucket seq -> how many messages it marked."""
        return self.state(service, "dedup", "counts")

    def dedup_shard(self, service: str, seq: int, shard: int) -> str:
        """Hash of marked message ids: one shard of one bucket."""
        return self.state(service, "dedup", str(seq), str(shard))

    def outbox(self, service: str) -> str:
        """Events committed with the state, waiting to be relayed."""
        return self.state(service, "outbox")

    def consumer_lease(self, service: str, consumer: str) -> str:
        return self.state(service, "consumer", consumer)

    def breakers(self) -> str:
        """Hash: ``<owner>/<target>`` -> the last reported state of that circuit breaker."""
        return f"{self.namespace}:breakers"

    def reply(self, client_id: str) -> str:
        """The stream an RPC client reads its replies from."""
        return f"{self.namespace}:reply:{client_id}"

    # -- registry -----------------------------------------------------------
    def services(self) -> str:
        """Hash: every service that ever registered an instance -> its streams (JSON)."""
        return f"{self.namespace}:services"

    def instances(self, service: str) -> str:
        """Sorted set: instance id -> time of its last heartbeat (Redis clock, ms)."""
        return f"{self.namespace}:instances:{service}"

    def instance(self, service: str, instance_id: str) -> str:
        """Hash describing one instance; expires when its heartbeats stop."""
        return f"{self.namespace}:instance:{service}:{instance_id}"

    def stats(self, service: str) -> str:
        """Hash of a service's counters, summed over all its instances ever."""
        return f"{self.namespace}:stats:{service}"

    # -- delayed delivery ---------------------------------------------------
    def delayed(self, stream: str) -> str:
        """The sorted set of messages waiting to enter ``stream``.

        The hash tag is the stream's whole name, so this key and the stream
        share a slot and the mover can move entries in one script.
        """
        return f"{self.namespace}:delayed:{{{stream}}}"

    def delayed_parked(self, stream: str) -> str:
        """Hash: delayed entries that could not enter ``stream`` -> why, until
        they are dead-lettered (same hash slot as :meth:`delayed`)."""
        return f"{self.namespace}:delayed-parked:{{{stream}}}"

    def delayed_index(self) -> str:
        """The set of streams that have a delayed sorted set."""
        return f"{self.namespace}:delayed-index"

    # -- config store -------------------------------------------------------
    # One hash tag for every config key: a change updates its scope, the
    # version and the history in one script, inside one Redis Cluster slot.
    def config_scope(self, scope: str) -> str:
        """Hash of one scope (``global`` or a service name): key -> JSON value."""
        return f"{{{self.namespace}:config}}:scope:{scope}"

    def config_version(self) -> str:
        """Counter bumped by every config change; workers poll it."""
        return f"{{{self.namespace}:config}}:version"

    def config_history(self) -> str:
        """Stream of config changes: scope, key, old, new, at, version."""
        return f"{{{self.namespace}:config}}:history"

    def config_channel(self) -> str:
        """Pub/sub channel announcing a new config version."""
        return f"{self.namespace}:config"

    # -- tracing ------------------------------------------------------------
    def traces(self) -> str:
        """Capped stream of finished spans, one entry each (``telemetry.spans``)."""
        return f"{self.namespace}:traces"

    # -- rate limits --------------------------------------------------------
    def rate_limit(self, name: str, subject: str) -> str:
        """Hash ``{tokens, ts}``: one token bucket of limiter ``name`` for ``subject``.

        The limiter script touches only this key, so it needs no hash tag;
        without one, the buckets of many clients spread over a cluster's
        slots instead of all landing on one.
        """
        return f"{self.namespace}:rl:{name}:{subject}"
