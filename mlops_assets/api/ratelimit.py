"""A rate limit per tenant, behind one small interface: `hit(key)` counts a call and says how
long to wait when the tenant is over its limit. Fixed windows: at most `limit` calls in each
window, which starts with a tenant's first call. In memory for one process (the embedded
profile), in Redis where several API processes share the limit (production)."""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol

from mlops_assets.api.errors import ApiError


class RateLimiter(Protocol):
    def hit(self, key: str) -> float | None:
        """None when the call may go ahead; else the seconds until the window ends."""


class MemoryRateLimiter:
    blocking = False  # answers from memory: called on the event loop

    def __init__(self, limit: int, window_seconds: float, clock=time.monotonic) -> None:
        self._limit, self._window, self._clock = limit, window_seconds, clock
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window start, calls)
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        now = self._clock()
        with self._lock:
            start, calls = self._windows.get(key, (now, 0))
            if now - start >= self._window:
                start, calls = now, 0
            calls += 1
            self._windows[key] = (start, calls)
        return None if calls <= self._limit else start + self._window - now


class RedisRateLimiter:
    """One counter per tenant that expires with its window; every API process counts there."""

    PREFIX = "mlops:api:ratelimit:"
    blocking = True  # a round trip: called in a worker thread

    def __init__(self, url: str, limit: int, window_seconds: float, prefix: str = PREFIX) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self._limit, self._window_ms = limit, max(1, int(window_seconds * 1000))
        self._prefix = prefix

    def hit(self, key: str) -> float | None:
        import redis

        name = f"{self._prefix}{key}"
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(name, 0, px=self._window_ms, nx=True)
            pipe.incr(name)
            pipe.pttl(name)
            _, calls, ttl_ms = pipe.execute()
        except redis.RedisError:
            raise ApiError(
                503, "rate_limit_unavailable", "the rate limiter (Redis) is unreachable"
            ) from None
        if calls <= self._limit:
            return None
        return max(ttl_ms, 1) / 1000


def retry_after(seconds: float) -> str:
    """The Retry-After header: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
