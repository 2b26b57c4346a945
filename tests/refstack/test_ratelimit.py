"""The GCRA bucket: burst, then a retry_after that is exactly long enough."""

from refstack.api.ratelimit import LocalBucket


def test_burst_then_denied_with_retry_after():
    b = LocalBucket()
    now = 1000.0
    assert all(b.check("ip", rate=10, burst=20, now=now).allowed for _ in range(20))
    d = b.check("ip", rate=10, burst=20, now=now)
    assert not d.allowed and 0 < d.retry_after <= 0.1 + 1e-9


def test_waiting_retry_after_succeeds():
    b = LocalBucket()
    now = 0.0
    for _ in range(5):
        b.check("k", rate=1, burst=5, now=now)
    d = b.check("k", rate=1, burst=5, now=now)
    assert not d.allowed
    assert b.check("k", rate=1, burst=5, now=now + d.retry_after).allowed


def test_keys_are_independent():
    b = LocalBucket()
    for _ in range(3):
        b.check("a", rate=1, burst=3, now=0.0)
    assert not b.check("a", rate=1, burst=3, now=0.0).allowed
    assert b.check("b", rate=1, burst=3, now=0.0).allowed  # one tenant's burst does not throttle another
