"""Issue 10: the per-key limit beside the per-source one.

Main counted refused lookups per source only: one existing key could be hammered without end from
many networks (each source under its own limit). Now every refused activation of an existing key
counts against that key, whatever the source, in a locked row of its own, so the count is exact
across replicas (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections import Counter

import httpx

from tests.helpers.activation import VendorHandle

from .conftest import Instance
from .test_concurrency import _race, replicas  # noqa: F401 (the fixture)

LIMIT = 10


def _limit(handles: list[VendorHandle]) -> None:
    for handle in handles:
        assert handle.service is not None
        handle.service.reconfigure(rate_limit_key_failures=LIMIT)


def test_one_key_hammered_across_replicas_is_refused_after_the_limit(replicas: list[VendorHandle]) -> None:  # noqa: F811
    _limit(replicas)
    first = replicas[0]
    key = first.issue(max_activations=1)
    assert httpx.post(first.url + "/v1/activations", json=Instance().activation_body(key)).status_code == 201
    bodies = [Instance().activation_body(key) for _ in range(40)]
    codes = Counter(r.json()["error"]["code"] for r in _race(replicas, bodies))
    assert codes == {"no_activations_left": LIMIT, "rate_limited": 40 - LIMIT}, codes
    # another key, from the same source, is untouched: the limit is the key's, not everyone's
    other = first.issue()
    assert httpx.post(replicas[1].url + "/v1/activations", json=Instance().activation_body(other)).status_code == 201


def test_successful_activations_do_not_count_against_the_key(replicas: list[VendorHandle]) -> None:  # noqa: F811
    _limit(replicas)
    key = replicas[0].issue(max_activations=3 * LIMIT)
    bodies = [Instance().activation_body(key) for _ in range(2 * LIMIT)]
    assert Counter(r.status_code for r in _race(replicas, bodies)) == {201: 2 * LIMIT}
