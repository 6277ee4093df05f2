"""The demo shop: a catalog, stock and two accounts, and a tour of the saga.

:func:`token_secret` gives the demo's processes a token signing secret;
:func:`seed` fills a fresh namespace (and leaves an existing one as it is);
:func:`walkthrough` is the text ``streamcart up --demo`` prints;
:func:`tour` is ``streamcart demo``: orders placed through the gateway, a
declined payment and a cancel among them, each shown with its timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import httpx
from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.bus.rpc import RpcClient
from streamcart.errors import ConfigurationError, ConflictError
from streamcart.registry.discovery import Discovery
from streamcart.workers.users import signing_keys
from streamcart.workers.users.accounts import create_account

SHOPPER = ("shopper@streamcart.dev", "shopper-pass-123", "Demo Shopper")
ADMIN = ("admin@streamcart.dev", "admin-pass-123", "Demo Admin")
ADDRESS = {"name": "Demo Shopper", "line1": "88 Century Avenue", "city": "Shanghai",
           "zone": "local", "postcode": "200120"}  # fmt: skip
# sku, name, description, price (fen), category, grams, stock
PRODUCTS = [
    ("longjing-250g", "West Lake Longjing 250 g", "Spring-picked green tea from Hangzhou",
     16_800, "tea", 300, 50),
    ("tieguanyin-250g", "Anxi Tieguanyin 250 g", "Lightly roasted oolong with an orchid nose",
     12_800, "tea", 300, 50),
    ("puer-cake-357g", "Menghai Pu'er cake 357 g", "Aged ripe pu'er, earthy and smooth",
     23_800, "tea", 400, 30),
    ("jasmine-pearls-100g", "Jasmine dragon pearls 100 g", "Green tea scented with jasmine",
     9_800, "tea", 150, 40),
    ("gaiwan-white", "White porcelain gaiwan", "A 150 ml gaiwan for gongfu brewing",
     6_800, "teaware", 350, 20),
    ("yixing-teapot", "Yixing clay teapot", "Hand-made zisha teapot, 200 ml",
     45_800, "teaware", 600, 5),
    ("tea-tray-bamboo", "Bamboo tea tray", "Draining tray for gongfu sessions",
     15_800, "teaware", 1_800, 10),
    ("mooncake-box", "Lotus seed mooncakes (4)", "Gift box of four lotus paste mooncakes",
     8_800, "snacks", 800, 3),
]  # fmt: skip
READY_S = 60.0


async def token_secret(
    redis: Redis, keys: Keys, environ: MutableMapping[str, str] | None = None
) -> bool:
    """Give the processes ``streamcart up --demo`` starts a token signing secret.

    A secret the environment configures is kept (returns False). Otherwise one
    is generated once per namespace and kept in Redis, so a restarted demo
    still accepts its tokens, and put in ``STREAMCART_TOKEN_SECRET`` of
    ``environ`` (``os.environ``: the processes started next inherit it).
    Only the demo does this: a secret in the Redis every service can read is
    no secret, and everywhere else a missing one stops the process.

    Raises:
        ConfigurationError: the stored secret is empty.
    """
    env = os.environ if environ is None else environ
    if signing_keys.configured(env):
        return False
    key = keys.state("users", "jwt-secret")
    # One step: a separate GET racing a delete read None, and signed with b"None".
    fresh = secrets.token_urlsafe(48)
    stored = await redis.set(key, fresh, nx=True, get=True)
    secret = fresh if stored is None else str(stored)
    if not secret:
        raise ConfigurationError(f"the demo's token signing secret at {key} is empty; delete it")
    env[signing_keys.SECRET_ENV] = secret
    return True


async def seed(redis: Redis, keys: Keys, *, log: Callable[[str], None] = print) -> None:
    """The demo catalog, stock and accounts; what exists already is kept."""
    await _wait_for_services(redis, keys, ("catalog", "inventory"))
    async with RpcClient(redis, keys) as rpc:
        for sku, name, description, price, category, grams, units in PRODUCTS:
            product = {"sku": sku, "name": name, "description": description, "price": price,
                       "currency": "CNY", "category": category, "weight_g": grams}  # fmt: skip
            try:
                await rpc.call("catalog.create_product", product, timeout=10)
            except ConflictError:
                continue  # seeded before: leave its stock alone too
            await rpc.call("inventory.add_stock", {"sku": sku, "qty": units}, timeout=10)
    for (email, password, name), role in ((SHOPPER, "user"), (ADMIN, "admin")):
        with contextlib.suppress(ConflictError):
            await create_account(redis, keys, email, password, name, role)
    log(f"demo shop ready: {len(PRODUCTS)} products, accounts {SHOPPER[0]} and {ADMIN[0]}")


async def _wait_for_services(redis: Redis, keys: Keys, services: tuple[str, ...]) -> None:
    discovery = Discovery(redis, keys)
    deadline = time.monotonic() + READY_S
    while not all([await discovery.is_available(service) for service in services]):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the services {', '.join(services)} did not start in {READY_S}s")
        await asyncio.sleep(0.2)


def walkthrough(base_url: str, redis_url: str) -> str:
    """What to try first, for people who just ran ``make run``."""
    email, password, _ = SHOPPER
    login = f'{{"email": "{email}", "password": "{password}"}}'
    order = ('{"items": [{"sku": "longjing-250g", "qty": 1}], "payment_method": "alipay", '
             '"address": {"name": "Demo Shopper", "line1": "88 Century Avenue", '
             '"city": "Shanghai", "zone": "local", "postcode": "200120"}}')  # fmt: skip
    return f"""
streamcart is up
  API        {base_url}   (OpenAPI document: {base_url}/schema)
  Redis      {redis_url}
  shopper    {SHOPPER[0]} / {SHOPPER[1]}
  admin      {ADMIN[0]} / {ADMIN[1]}

Try it (in another terminal):
  curl -s '{base_url}/api/products?q=tea'
  curl -s {base_url}/api/products/longjing-250g
  TOKEN=$(curl -s {base_url}/api/users/login -H 'content-type: application/json' \\
      -d '{login}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -si {base_url}/api/orders -H "Authorization: Bearer $TOKEN" \\
      -H 'content-type: application/json' -H 'Idempotency-Key: first-order' -d '{order}'
  curl -s {base_url}/api/orders -H "Authorization: Bearer $TOKEN"
  .venv/bin/streamcart demo            # more orders: a declined payment and a cancel
  .venv/bin/streamcart status          # every service: instances, lag, pending, DLQ
  .venv/bin/streamcart trace show ID   # ID: the X-Trace-Id of any response
Ctrl-C stops everything.
"""


async def tour(base_url: str, *, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Orders through the gateway: one delivered, one declined, one cancelled.

    Returns each order as the gateway last showed it, with its trace id.
    """
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        login = await client.post(
            "/api/users/login", json={"email": SHOPPER[0], "password": SHOPPER[1]}
        )
        login.raise_for_status()
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        plans = [
            ("a delivered order", {"payment_token": "tok_ok"}, "DELIVERED"),
            ("a declined payment", {"payment_token": "tok_declined"}, "PAYMENT_FAILED"),
            ("a cancelled order", {"payment_token": "tok_ok"}, "CANCELLED"),
        ]
        shown = []
        for title, extra, goal in plans:
            body = {"items": [{"sku": "tieguanyin-250g", "qty": 1}], "payment_method": "wechat",
                    "address": ADDRESS, **extra}  # fmt: skip
            placed = await client.post("/api/orders", json=body, headers=auth)
            placed.raise_for_status()
            order_id = placed.json()["order_id"]
            if goal == "CANCELLED":
                await _until(client, auth, order_id, {"CONFIRMED", "PAYMENT_FAILED", "REJECTED"})
                cancelled = await client.post(f"/api/orders/{order_id}/cancel", headers=auth)
                cancelled.raise_for_status()
            order = await _until(client, auth, order_id, {goal, "REJECTED", "PAYMENT_FAILED"})
            if order["status"] == "CANCELLED" and order.get("payment"):
                order = await _until(client, auth, order_id, {"CANCELLED"}, refunded=True)
            order["trace_id"] = placed.headers.get("x-trace-id", "")
            log(_describe(title, order))
            shown.append(order)
        return shown


async def _until(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    order_id: str,
    statuses: set[str],
    *,
    refunded: bool = False,
) -> dict[str, Any]:
    """The order once it is in one of ``statuses`` (and its payment refunded)."""
    deadline = time.monotonic() + READY_S
    while True:
        response = await client.get(f"/api/orders/{order_id}", headers=auth)
        response.raise_for_status()
        order: dict[str, Any] = response.json()
        settled = order["status"] in statuses and (
            not refunded or (order.get("payment") or {}).get("refunded")
        )
        if settled or time.monotonic() > deadline:
            return order
        await asyncio.sleep(0.1)


def _describe(title: str, order: dict[str, Any]) -> str:
    started = order["timeline"][0]["at"] if order["timeline"] else 0
    steps = ", ".join(
        f"{step['status']} +{(step['at'] - started) / 1000:.2f}s" for step in order["timeline"]
    )
    payment = order.get("payment") or {}
    money = f"paid {payment.get('amount', 0) / 100:.2f} {order['currency']}" if payment else ""
    if payment.get("refunded"):
        money += f", refunded {payment['refunded'] / 100:.2f}"
    reason = f" ({order['reason']})" if order.get("reason") else ""
    return (
        f"{title}: order {order['order_id']} is {order['status']}{reason}\n"
        f"  timeline: {steps}\n"
        f"  {money or 'no payment'}; trace: streamcart trace show {order['trace_id']}"
    )
