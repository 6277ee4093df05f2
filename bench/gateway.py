"""Gateway requests/s and latency for cheap routes, over real HTTP on loopback.

    python bench/gateway.py [--requests 3000] [--concurrency 32] [--redis-url URL]

Starts `streamcart worker users` and `streamcart gateway` as processes, makes
an account, then times `GET /healthz` (no Redis) and `GET /api/me` (token
check, rate limit, one RPC to the users service) with httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid

import httpx
from server import add_redis_option, redis_for_bench

from streamcart.workers.users.signing_keys import SECRET_ENV


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def timed(port: int, path: str, count: int, concurrency: int,
                headers: dict[str, str]) -> tuple[float, float, float]:  # fmt: skip
    """(requests/s, p50 ms, p99 ms) of ``count`` GETs over ``concurrency`` keep-alive
    connections. A bare asyncio client: httpx would be the bottleneck, not the gateway."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n{extra}\r\n".encode()
    samples: list[float] = []
    per_connection = [count // concurrency + (i < count % concurrency) for i in range(concurrency)]

    async def connection(requests: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(requests):
                start = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                samples.append((time.perf_counter() - start) * 1000)
                if status != 200:
                    raise RuntimeError(f"GET {path} answered {status}")
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection(n) for n in per_connection))
    elapsed = time.perf_counter() - start
    samples.sort()
    return count / elapsed, statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


async def main(url: str, count: int, concurrency: int) -> None:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    port = free_port()
    base = [sys.executable, "-m", "streamcart", "--redis-url", url, "--namespace", namespace]
    # The users worker signs and the gateway verifies tokens with one secret.
    env = {**os.environ, SECRET_ENV: secrets.token_urlsafe(48)}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    procs = [
        subprocess.Popen([*base, "worker", "users"], **quiet),  # type: ignore[call-overload]
        subprocess.Popen([*base, "config", "set", "gateway", "rate", "100000"], **quiet),  # type: ignore[call-overload]
    ]
    procs[1].wait(30)
    procs.append(subprocess.Popen([*base, "gateway", "--port", str(port)], **quiet))  # type: ignore[call-overload]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
            for _ in range(200):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            account = {"email": "bench@example.com", "password": "long enough", "name": "B"}
            await client.post("/api/users/register", json=account)
            login = await client.post(
                "/api/users/login", json={k: account[k] for k in ("email", "password")}
            )
            token = login.json()["token"]
            print(f"{count:,} requests, {concurrency} at a time, HTTP/1.1 keep-alive on loopback")
            for path, headers in (
                ("/healthz", {}),
                ("/api/me", {"Authorization": f"Bearer {token}"}),
            ):
                await timed(port, path, 200, concurrency, headers)  # warm up
                rate, p50, p99 = await timed(port, path, count, concurrency, headers)
                print(
                    f"  GET {path:<10} {rate:8,.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"
                )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(30)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--concurrency", type=int, default=32)
    add_redis_option(parser)
    args = parser.parse_args()
    with redis_for_bench(args.redis_url) as url:
        asyncio.run(main(url, args.requests, args.concurrency))


if __name__ == "__main__":
    cli()
