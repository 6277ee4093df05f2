"""A local webhook receiver for alert tests (loopback only)."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any


class Receiver:
    """What a test sees of the webhook: its URL and the JSON bodies it accepted."""

    def __init__(self, fail_first: int) -> None:
        self.url = ""
        self.received: list[dict[str, Any]] = []
        self.fail_first = fail_first


@contextlib.contextmanager
def webhook(fail_first: int = 0) -> Iterator[Receiver]:
    """Serve a webhook that answers 500 to its first ``fail_first`` posts,
    then records each body and answers 204."""
    receiver = Receiver(fail_first)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if receiver.fail_first > 0:
                receiver.fail_first -= 1
                self.send_response(500)
            else:
                receiver.received.append(json.loads(body))
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
