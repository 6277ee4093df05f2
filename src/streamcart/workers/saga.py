"""How long the order saga's steps keep trying: longer than the outages they wait out.

A saga step that gives up leaves its order half done: stock reserved, money
captured and never refunded, an order that never moves again. So orders,
inventory, payments and logistics retry a failing message for a quarter of an
hour or more before it is dead-lettered: with the payment provider's breaker
open each try waits out its cool-down (about 5 s, so 200 tries last over 16
minutes); otherwise the backoff doubles up to 30 s (tries 15 to 30 s apart,
about an hour in all). That outlasts the saga timeout (orders'
``saga_timeout_s``, 15 minutes by default), which compensates an order still
unconfirmed by then, and the cap keeps an order waiting at most about 30 s
once the outage is over. Each value can still be set per service in the config
store (``streamcart config set payments max_attempts 50``).
"""

from __future__ import annotations

from streamcart.bus.options import ServiceOptions

SAGA_RETRIES = ServiceOptions(max_attempts=200, retry_max_ms=30_000)
