"""The Redis Streams bus: services, their consumers, publishing."""

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.publisher import Message, Publisher
from streamcart.bus.service import Service

__all__ = ["Context", "Message", "Publisher", "Service", "ServiceOptions"]
