"""A real incoming-webhook endpoint for the alert tests: an http.server on a loopback port, in a
thread, that records every JSON body posted to it and can answer the first N posts with a status
of the test's choosing (503: retry later; 400: a payload it will never take) or hang on them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    url: str
    fail_first: int = 0  # answer this many posts with `fail_status`
    fail_status: int = 503
    hang_seconds: float = 0.0  # sleep this long before answering a failed post
    posts: list[dict[str, Any]] = field(default_factory=list)  # accepted bodies
    attempts: int = 0  # every post, accepted or not
    lock: threading.Lock = field(default_factory=threading.Lock)

    def titles(self) -> list[str]:
        return [p["blocks"][0]["text"]["text"] for p in self.posts]


@contextmanager
def webhook_receiver(port: int = 0, **options: Any) -> Iterator[Receiver]:
    """The receiver on `port` (0: a free one), serving until the block ends."""
    receiver: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with receiver.lock:
                receiver.attempts += 1
                failing = receiver.attempts <= receiver.fail_first
                if not failing:
                    receiver.posts.append(json.loads(body))
            if failing and receiver.hang_seconds:
                time.sleep(receiver.hang_seconds)
            status = receiver.fail_status if failing else 200
            answer = b"ok" if status == 200 else b"no_service"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook", **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def refused_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    from mlops_assets.testing import free_port

    return f"http://127.0.0.1:{free_port()}/hook"
