"""Token buckets of the rate limits, and the per-address byte buckets."""

from __future__ import annotations

from shared.websocket.access import AddressBuckets, TokenBucket


def test_a_bucket_spends_what_it_holds_and_no_more() -> None:
    bucket = TokenBucket(rate=1e-9, burst=3)  # refills too slowly to matter here
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.5)


def test_owing_goes_into_debt_and_says_how_long_it_lasts() -> None:
    bucket = TokenBucket(rate=100, burst=100)
    assert bucket.owe(100) == 0.0
    assert 0.49 < bucket.owe(50) <= 0.5  # fifty owed at a hundred a second
    assert not bucket.take()


def test_connections_of_one_address_share_its_bucket() -> None:
    addresses = AddressBuckets(rate=1e-9, burst=100)
    with addresses.held("198.51.100.1") as first, addresses.held("198.51.100.1") as second:
        assert first is second
        with addresses.held("198.51.100.2") as other:
            assert other is not first


def test_a_drained_bucket_outlives_its_last_connection() -> None:
    addresses = AddressBuckets(rate=1e-9, burst=100)
    with addresses.held("198.51.100.1") as bucket:
        bucket.owe(100)
    for index in range(10):  # others come and go: the drained one is not forgotten
        with addresses.held(f"203.0.113.{index}"):
            pass
    with addresses.held("198.51.100.1") as again:
        assert again is bucket
        assert not again.take()


def test_buckets_of_addresses_gone_quiet_are_forgotten() -> None:
    addresses = AddressBuckets(rate=1e12, burst=100)  # full again at once
    for index in range(1000):
        with addresses.held(f"10.0.{index // 256}.{index % 256}") as bucket:
            bucket.owe(100)
    assert len(addresses) <= 3
