"""The cart service: a user's cart, priced at read time, checked out into an order.

``cart.add_item`` and ``cart.set_quantity`` check the product with the
catalog and the cart's limits; ``cart.get`` prices the lines with one
``catalog.get_many`` call; ``cart.checkout`` places the order with
``orders.place`` and only then takes the ordered lines out of the cart
(``cart.checked_out``), see :mod:`.checkout`.
"""

from __future__ import annotations

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.errors import InvalidError
from streamcart.workers import events
from streamcart.workers.cart.checkout import (
    CheckedOut,
    Checkout,
    Placed,
    ordered,
    remembered,
    repeated,
    take_out,
)
from streamcart.workers.cart.keys import SERVICE, CartKeys
from streamcart.workers.cart.pricing import CartView, lookup, priced
from streamcart.workers.cart.rules import (
    CartSettings,
    check_buyable,
    check_line,
    check_qty,
    check_user,
)


class AddItem(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user_id: str
    sku: str
    qty: int = 1


class SetQuantity(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user_id: str
    sku: str
    qty: int  # 0 removes the line


class RemoveItem(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user_id: str
    sku: str


class CartOf(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``cart.get`` and ``cart.clear``."""

    user_id: str


class CartLine(msgspec.Struct, frozen=True, kw_only=True):
    """A line as it is now (``qty`` 0: not in the cart)."""

    sku: str
    qty: int


def _settings(ctx: Context) -> CartSettings:
    return ctx.config if isinstance(ctx.config, CartSettings) else CartSettings()


async def _put(ctx: Context, user_id: str, sku: str, qty: int, *, add: bool) -> CartLine:
    """Set (or with ``add``, raise) the quantity of a product the catalog knows."""
    check_user(user_id)
    cart = CartKeys(ctx.key).cart(user_id)
    # The catalog first, outside the watch: an RPC must not widen the conflict
    # window. One product the cart holds already tells the cart's currency.
    other = [held for held in await ctx.redis.hkeys(cart) if held != sku][:1]
    check_buyable(sku, await lookup(ctx, [sku, *other]))
    await ctx.watch(cart)
    lines = await ctx.redis.hgetall(cart)
    if add:
        qty += int(lines.get(sku, 0))
    check_line(_settings(ctx), lines, sku, qty)
    ctx.tx.hset(cart, sku, qty)
    return CartLine(sku=sku, qty=qty)


async def _place(ctx: Context, msg: Checkout, cart: str, note: str) -> Placed:
    """The order for the cart: placed now, or noted by an earlier run of this message.

    Raises:
        InvalidError: the cart is empty; and what ``orders.place`` raises.
    """
    noted = await ctx.redis.get(note)
    if noted is not None:
        # A rerun (a conflict at the commit, a retry): the cart may hold other
        # lines by now, and the same key with other lines is a conflict at orders.
        return msgspec.json.decode(noted, type=Placed)
    lines = await ctx.redis.hgetall(cart)
    if not lines:
        raise InvalidError("the cart is empty")
    items = ordered(lines)
    order = events.PlaceOrder(
        user_id=msg.user_id,
        items=items,
        payment_method=msg.payment_method,
        payment_token=msg.payment_token,
        address=msg.address,
        # Without a key of the caller's, this message's id: a retry of this
        # handler (a failed commit, a crash) gets the first order back.
        idempotency_key=msg.idempotency_key or f"cart-checkout:{ctx.message.id}",
    )
    accepted: events.OrderAccepted = await ctx.call(
        events.ORDERS_PLACE, order, response_type=events.OrderAccepted
    )
    placed = Placed(order=accepted, items=items)
    # Written at once, not with the commit: it is what a rerun must find.
    await ctx.redis.set(note, msgspec.json.encode(placed), ex=_settings(ctx).checkout_memory_s)
    return placed


def build(options: ServiceOptions | None = None) -> Service:
    """The cart service."""
    service = Service(SERVICE, options=options, settings=CartSettings)

    @service.on("cart.add_item")
    async def add_item(msg: AddItem, ctx: Context) -> CartLine:
        """Add ``qty`` of a product (to what the cart holds of it already).

        Raises:
            NotFoundError: the catalog has no such product.
            InvalidError: ``qty`` below 1, over ``max_qty`` in all, a new line
                past ``max_lines``, or another currency than the cart's.
        """
        check_qty(msg.qty, minimum=1)
        return await _put(ctx, msg.user_id, msg.sku, msg.qty, add=True)

    @service.on("cart.set_quantity")
    async def set_quantity(msg: SetQuantity, ctx: Context) -> CartLine:
        """Hold exactly ``qty`` of a product; 0 removes it.

        Raises:
            NotFoundError, InvalidError: as ``cart.add_item``.
        """
        check_qty(msg.qty, minimum=0)
        if msg.qty == 0:
            return await remove_item(RemoveItem(user_id=msg.user_id, sku=msg.sku), ctx)
        return await _put(ctx, msg.user_id, msg.sku, msg.qty, add=False)

    @service.on("cart.remove_item")
    async def remove_item(msg: RemoveItem, ctx: Context) -> CartLine:
        """Take a product out of the cart; removing one it does not hold is no error."""
        check_user(msg.user_id)
        ctx.tx.hdel(CartKeys(ctx.key).cart(msg.user_id), msg.sku)
        return CartLine(sku=msg.sku, qty=0)

    @service.on("cart.get")
    async def get(msg: CartOf, ctx: Context) -> CartView:
        """The cart at the catalog's current prices (an unknown user has an empty cart)."""
        check_user(msg.user_id)
        lines = await ctx.redis.hgetall(CartKeys(ctx.key).cart(msg.user_id))
        products = await lookup(ctx, sorted(lines))
        return priced(msg.user_id, lines, products, _settings(ctx).currency)

    @service.on("cart.clear")
    async def clear(msg: CartOf, ctx: Context) -> None:
        check_user(msg.user_id)
        ctx.tx.delete(CartKeys(ctx.key).cart(msg.user_id))

    @service.on("cart.checkout")
    async def checkout(msg: Checkout, ctx: Context) -> events.OrderAccepted:
        """Order what the cart holds, then take those lines out of it (what was
        added meanwhile stays); the cart is left as it was when ``orders.place``
        fails (its error is the reply).

        Raises:
            InvalidError: the cart is empty, or orders refused the order as asked.
            ConflictError: the idempotency key was used for another checkout.
            NotFoundError, UnavailableError, RpcTimeoutError: from orders.
        """
        check_user(msg.user_id)
        keys = CartKeys(ctx.key)
        cart = keys.cart(msg.user_id)
        note = keys.placed(ctx.message.id)
        ctx.tx.delete(note)
        memory = keys.checkout(msg.user_id, msg.idempotency_key) if msg.idempotency_key else ""
        if memory:
            # A twin checkout with this key that commits first makes this one
            # run again, and find the first.
            await ctx.watch(memory)
            first = await ctx.redis.get(memory)
            if first is not None:
                lines = await ctx.redis.hgetall(cart)
                return repeated(msgspec.json.decode(first, type=CheckedOut), msg, lines)
        placed = await _place(ctx, msg, cart, note)
        # Watched after the call, so a change in the cart during it costs no
        # second run; one after the read runs this again, with the order noted.
        await ctx.watch(cart)
        take_out(ctx, cart, await ctx.redis.hgetall(cart), placed.items)
        if memory:
            ctx.tx.set(
                memory,
                msgspec.json.encode(remembered(placed, msg)),
                ex=_settings(ctx).checkout_memory_s,
            )
        checked_out = events.CartCheckedOut(
            user_id=msg.user_id,
            order_id=placed.order.order_id,
            items=[events.Line(sku=item.sku, qty=item.qty) for item in placed.items],
        )
        ctx.publish(events.CART_CHECKED_OUT, checked_out, key=msg.user_id)
        return placed.order

    return service
