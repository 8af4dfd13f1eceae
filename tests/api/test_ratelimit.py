"""A rate limit per tenant: in memory for one process, in Redis (the machine's, on
127.0.0.1:6379) shared by several API processes; over the limit is a 429 with Retry-After."""

from __future__ import annotations

import uuid

import pytest

from mlops_assets.api.ratelimit import MemoryRateLimiter, RedisRateLimiter
from tests.api.conftest import auth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_limiter_counts_fixed_windows_per_key():
    clock = Clock()
    limiter = MemoryRateLimiter(limit=3, window_seconds=10, clock=clock)
    assert [limiter.hit("a") for _ in range(3)] == [None, None, None]
    assert limiter.hit("a") == pytest.approx(10)
    assert limiter.hit("b") is None  # another tenant has its own window
    clock.now += 4
    assert limiter.hit("a") == pytest.approx(6)
    clock.now += 6
    assert limiter.hit("a") is None


def test_the_api_answers_429_with_retry_after(make_client):
    client = make_client(limiter=MemoryRateLimiter(limit=2, window_seconds=30))
    assert [client.get("/v1/models", headers=auth()).status_code for _ in range(2)] == [200, 200]
    answer = client.get("/v1/models", headers=auth())
    assert answer.status_code == 429
    assert 1 <= int(answer.headers["retry-after"]) <= 30
    assert answer.json()["reason"] == "rate_limited"
    assert client.get("/v1/models", headers=auth(tenant="wholesale")).status_code == 200


@pytest.fixture
def redis_limiters(redis_address):
    """Two limiters on the machine's Redis, as two API processes would have, under a private key
    prefix removed afterwards."""
    import redis

    host, port = redis_address
    url, prefix = f"redis://{host}:{port}/0", f"mlops:test:{uuid.uuid4().hex}:"
    yield [RedisRateLimiter(url, limit=5, window_seconds=20, prefix=prefix) for _ in range(2)]
    connection = redis.Redis(host=host, port=port)
    for key in connection.scan_iter(f"{prefix}*"):
        connection.delete(key)


def test_redis_limit_is_shared_between_processes(make_client, redis_limiters):
    first, second = (make_client(limiter=limiter) for limiter in redis_limiters)
    statuses = [
        (first if i % 2 else second).get("/v1/models", headers=auth()).status_code for i in range(7)
    ]
    assert statuses == [200] * 5 + [429] * 2
    answer = first.get("/v1/models", headers=auth())
    assert answer.status_code == 429 and 1 <= int(answer.headers["retry-after"]) <= 20
    assert second.get("/v1/models", headers=auth(tenant="wholesale")).status_code == 200


def test_unreachable_redis_is_a_clear_503(make_client):
    from mlops_assets.testing import free_port

    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", limit=5, window_seconds=20)
    answer = make_client(limiter=limiter).get("/v1/models", headers=auth())
    assert answer.status_code == 503 and answer.json()["reason"] == "rate_limit_unavailable"
