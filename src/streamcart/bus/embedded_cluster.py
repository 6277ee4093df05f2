"""A Redis Cluster of embedded servers on 127.0.0.1, for tests and benchmarks.

Each master is an :class:`EmbeddedRedis` in cluster mode with its own data
directory; the slots are split evenly with ``CLUSTER ADDSLOTSRANGE`` and the
nodes introduced with ``CLUSTER MEET``, the same steps ``redis-cli --cluster
create`` takes, without replicas. The nodes keep no AOF unless asked (tests and
benchmarks throw their data away); asked, each fsyncs it as :class:`EmbeddedRedis` does.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import redis

from streamcart.bus.embedded import HOST, EmbeddedRedis, port_is_free
from streamcart.errors import RedisUnavailableError

SLOTS = 16_384
# A node also listens on its port + 10000 for the cluster bus. Both stay below
# Linux's ephemeral range (32768 and up), where outgoing connections take ports.
BUS_PORT_OFFSET = 10_000
_PORTS = (10_000, 22_767)
_START_ATTEMPTS = 3
FORM_TIMEOUT_S = 20.0
_POLL_S = 0.05


class EmbeddedCluster:
    """``masters`` cluster-mode servers under ``data_dir``, joined into one cluster;
    ``appendonly`` and ``appendfsync`` as for :class:`EmbeddedRedis`, on every node."""

    def __init__(
        self,
        data_dir: Path,
        masters: int = 3,
        *,
        appendonly: bool = False,
        appendfsync: str | None = None,
    ) -> None:
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.nodes = [self._node(Path(data_dir) / f"node-{index}") for index in range(masters)]

    @property
    def url(self) -> str:
        """The cluster's URL: any one node, with the scheme that asks for a cluster client."""
        return self.nodes[0].url.replace("redis://", "redis+cluster://", 1)

    @property
    def node_urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> str:
        """Start every node, assign the slots, join them; return :attr:`url` once all agree."""
        try:
            for index in range(len(self.nodes)):
                self._start_node(index)
            self._form()
        except BaseException:
            self.stop()
            raise
        return self.url

    def _start_node(self, index: int) -> None:
        for attempt in range(_START_ATTEMPTS):
            try:
                self.nodes[index].start(daemonize=False)
                return
            except RedisUnavailableError:
                # Another process took the port since we found it free: another one.
                if attempt == _START_ATTEMPTS - 1:
                    raise
                self.nodes[index] = self._node(self.nodes[index].data_dir)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def _node(self, data_dir: Path) -> EmbeddedRedis:
        return EmbeddedRedis(
            data_dir,
            port=_free_node_port(),
            appendonly=self.appendonly,
            appendfsync=self.appendfsync,
            cluster_node=True,
        )

    def _form(self) -> None:
        clients = [redis.Redis.from_url(url, decode_responses=True) for url in self.node_urls]
        try:
            share = SLOTS // len(clients)
            for index, client in enumerate(clients):
                last = SLOTS - 1 if index == len(clients) - 1 else (index + 1) * share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, last)
            first = clients[0]
            for node in self.nodes[1:]:
                first.execute_command("CLUSTER", "MEET", HOST, _port(node.url))
            deadline = time.monotonic() + FORM_TIMEOUT_S
            while not all(_sees_whole_cluster(client, len(clients)) for client in clients):
                if time.monotonic() > deadline:
                    raise RedisUnavailableError(
                        f"the cluster did not form within {FORM_TIMEOUT_S:g} s; "
                        f"see {self.nodes[0].logfile}"
                    )
                time.sleep(_POLL_S)
        finally:
            for client in clients:
                client.close()


def _free_node_port() -> int:
    """A port free for the node and for its cluster bus port."""
    while True:
        port = random.randint(*_PORTS)
        if all(port_is_free(candidate) for candidate in (port, port + BUS_PORT_OFFSET)):
            return port


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _sees_whole_cluster(client: redis.Redis, masters: int) -> bool:
    info = client.execute_command("CLUSTER", "INFO")
    text = info if isinstance(info, str) else info.decode()
    fields = dict(line.split(":", 1) for line in text.split() if ":" in line)
    return fields.get("cluster_state") == "ok" and fields.get("cluster_known_nodes") == str(masters)
