"""The shop's events: what each service publishes, as the others read it.

One module for every cross-service payload (contract section 4), so a producer
and its consumers cannot drift apart. A type's first segment is its topic
stream (``order.placed`` -> ``<ns>:events:order``). Money is an integer in
minor units beside a currency code, never a float.
"""

from __future__ import annotations

import msgspec

# -- message types ------------------------------------------------------------
PRODUCT_CREATED, PRODUCT_UPDATED, PRODUCT_VIEWED = (
    "product.created", "product.updated", "product.viewed",
)  # fmt: skip
CART_CHECKED_OUT = "cart.checked_out"
ORDER_PLACED, ORDER_CONFIRMED, ORDER_REJECTED = "order.placed", "order.confirmed", "order.rejected"
ORDER_CANCELLED, ORDER_COMPLETED = "order.cancelled", "order.completed"
INVENTORY_RESERVED, INVENTORY_REJECTED = "inventory.reserved", "inventory.rejected"
INVENTORY_RELEASED, INVENTORY_COMMITTED = "inventory.released", "inventory.committed"
INVENTORY_LOW_STOCK = "inventory.low_stock"
PAYMENT_CAPTURED, PAYMENT_FAILED, PAYMENT_REFUNDED = (
    "payment.captured", "payment.failed", "payment.refunded",
)  # fmt: skip
SHIPMENT_CREATED, SHIPMENT_DISPATCHED, SHIPMENT_DELIVERED = (
    "shipment.created", "shipment.dispatched", "shipment.delivered",
)  # fmt: skip
SHIPMENT_CANCELLED = "shipment.cancelled"
REVIEW_SUBMITTED, REVIEW_PUBLISHED, REVIEW_REJECTED = (
    "review.submitted", "review.published", "review.rejected",
)  # fmt: skip
MODERATION_DECIDED = "moderation.decided"
SURVEY_SENT = "survey.sent"

# Order statuses (contract section 4).
PENDING, RESERVED, CONFIRMED, SHIPPED, DELIVERED = (
    "PENDING", "RESERVED", "CONFIRMED", "SHIPPED", "DELIVERED",
)  # fmt: skip
REJECTED, PAYMENT_FAILED_STATUS, CANCELLED = "REJECTED", "PAYMENT_FAILED", "CANCELLED"
PAYMENT_METHODS = ("alipay", "wechat", "card")


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every shop event: unknown fields are ignored, so a producer
    may add fields without breaking older consumers."""


# -- catalog ------------------------------------------------------------------
class Product(Event, frozen=True, kw_only=True):
    """A product as the catalog publishes it; ``sku`` is its id."""

    sku: str
    name: str
    description: str = ""
    price: int  # minor units
    currency: str = "CNY"
    category: str = ""
    weight_g: int = 0


class ProductViewed(Event, frozen=True, kw_only=True):
    sku: str
    user_id: str | None = None


# -- orders -------------------------------------------------------------------
class Line(Event, frozen=True, kw_only=True):
    """One line of an order: ``qty`` of ``sku`` at ``unit_price`` (minor units)."""

    sku: str
    qty: int
    unit_price: int = 0


class Address(Event, frozen=True, kw_only=True):
    name: str
    line1: str
    city: str
    zone: str
    postcode: str


class CartCheckedOut(Event, frozen=True, kw_only=True):
    user_id: str
    order_id: str
    items: list[Line]


class OrderPlaced(Event, frozen=True, kw_only=True):
    order_id: str
    user_id: str
    items: list[Line]
    total: int
    currency: str
    payment_method: str
    payment_token: str = ""
    address: Address


class OrderConfirmed(Event, frozen=True, kw_only=True):
    order_id: str
    user_id: str
    items: list[Line]
    total: int
    currency: str
    address: Address


class OrderRejected(Event, frozen=True, kw_only=True):
    order_id: str
    user_id: str
    reason: str


class OrderCancelled(Event, frozen=True, kw_only=True):
    order_id: str
    user_id: str
    reason: str
    items: list[Line]


class OrderCompleted(Event, frozen=True, kw_only=True):
    order_id: str
    user_id: str
    items: list[Line]


# -- inventory ----------------------------------------------------------------
class InventoryReserved(Event, frozen=True, kw_only=True):
    """Every line is held for the order; it carries what payments needs to charge it."""

    order_id: str
    user_id: str
    items: list[Line]
    total: int
    currency: str
    payment_method: str
    payment_token: str = ""


class Shortage(Event, frozen=True, kw_only=True):
    sku: str
    requested: int
    available: int


class InventoryRejected(Event, frozen=True, kw_only=True):
    order_id: str
    reason: str
    shortages: list[Shortage] = msgspec.field(default_factory=list)


class InventoryReleased(Event, frozen=True, kw_only=True):
    order_id: str


class InventoryCommitted(Event, frozen=True, kw_only=True):
    order_id: str


class LowStock(Event, frozen=True, kw_only=True):
    sku: str
    available: int
    threshold: int


# -- payments -----------------------------------------------------------------
class PaymentCaptured(Event, frozen=True, kw_only=True):
    order_id: str
    payment_id: str
    amount: int
    currency: str
    method: str


class PaymentFailed(Event, frozen=True, kw_only=True):
    order_id: str
    reason: str
    code: str  # declined, timeout, error, ...


class PaymentRefunded(Event, frozen=True, kw_only=True):
    order_id: str
    payment_id: str
    amount: int
    currency: str


# -- logistics ----------------------------------------------------------------
class ShipmentCreated(Event, frozen=True, kw_only=True):
    order_id: str
    shipment_id: str
    courier: str
    fee: int
    currency: str


class ShipmentProgress(Event, frozen=True, kw_only=True):
    """``shipment.dispatched`` and ``shipment.delivered``."""

    order_id: str
    shipment_id: str


class ShipmentCancelled(Event, frozen=True, kw_only=True):
    """The order's shipment is stopped for good (``logistics.stop_shipment``):
    nothing will leave for it, so the order may be, and must be, cancelled."""

    order_id: str
    shipment_id: str
    reason: str


# -- reviews, moderation, surveys ---------------------------------------------
class Review(Event, frozen=True, kw_only=True):
    """``review.submitted`` and ``review.published``."""

    review_id: str
    sku: str
    user_id: str
    rating: int  # 1..5
    text: str


class ReviewRejected(Event, frozen=True, kw_only=True):
    review_id: str
    sku: str
    user_id: str
    reasons: list[str]


class ModerationDecided(Event, frozen=True, kw_only=True):
    """The classifier's verdict on a review or a product description."""

    subject: str  # "review" | "product"
    subject_id: str
    allowed: bool
    reasons: list[str] = msgspec.field(default_factory=list)


class SurveySent(Event, frozen=True, kw_only=True):
    survey_id: str
    order_id: str
    user_id: str


# -- commands other services send ------------------------------------------------
ORDERS_PLACE = "orders.place"
LOGISTICS_STOP_SHIPMENT = "logistics.stop_shipment"


class StopShipment(Event, frozen=True, kw_only=True):
    """``logistics.stop_shipment`` (a request): the reply is :class:`ShipmentCancelled`,
    or a conflict when the parcel has left already."""

    order_id: str
    reason: str


class ItemRequest(Event, frozen=True, kw_only=True):
    """A line as a buyer asks for it: the price comes from the catalog."""

    sku: str
    qty: int


class PlaceOrder(Event, frozen=True, kw_only=True):
    """``orders.place`` (a request): the reply is :class:`OrderAccepted`.

    ``idempotency_key`` makes a retried placement return the first order; the
    same key with different items is a conflict."""

    user_id: str
    items: list[ItemRequest]
    payment_method: str
    payment_token: str = ""
    address: Address
    idempotency_key: str = ""


class OrderAccepted(Event, frozen=True, kw_only=True):
    order_id: str
    status: str
