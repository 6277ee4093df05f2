"""streamcart: an event-driven backend on Redis Streams, as actor-style worker pools."""

from streamcart.bus import Context, Message, Publisher, Service, ServiceOptions
from streamcart.errors import PermanentError, StreamcartError, TransientError

__all__ = [
    "Context",
    "Message",
    "PermanentError",
    "Publisher",
    "Service",
    "ServiceOptions",
    "StreamcartError",
    "TransientError",
]
__version__ = "0.1.0"
