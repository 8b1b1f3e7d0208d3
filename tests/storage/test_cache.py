"""BlockCache: LRU bounded in bytes, hit counting, per-file erasure, thread safety."""

from __future__ import annotations

import random
import threading

from tabledb.storage.cache import BlockCache


def test_lru_eviction_by_bytes():
    cache = BlockCache(100)
    cache.insert((1, 0), "a", 40)
    cache.insert((1, 10), "b", 40)
    assert cache.get((1, 0)) == "a"          # a is now the most recently used
    cache.insert((2, 0), "c", 40)            # 120 > 100: evicts b, the LRU entry
    assert cache.get((1, 10)) is None
    assert cache.get((1, 0)) == "a" and cache.get((2, 0)) == "c"
    assert cache.stats() == {"capacity": 100, "usage": 80, "entries": 2, "hits": 3, "misses": 1, "declined": 0}
    cache.insert((3, 0), "d", 100)           # exactly the capacity: evicts everything else
    assert cache.stats()["entries"] == 1 and cache.stats()["usage"] == 100
    assert cache.get((3, 0)) == "d"


def test_entry_larger_than_capacity_is_not_cached():
    cache = BlockCache(100)
    cache.insert((1, 0), "a", 50)
    cache.insert((1, 5), "huge", 101)
    assert cache.get((1, 5)) is None
    assert cache.get((1, 0)) == "a"
    assert cache.stats()["usage"] == 50
    cache.insert((1, 0), "a2", 101)          # replacing with a too-large value drops the old one
    assert cache.get((1, 0)) is None and cache.stats()["usage"] == 0
    zero = BlockCache(0)
    zero.insert((1, 0), "x", 1)
    assert zero.get((1, 0)) is None


def test_reinsert_replaces_and_recharges():
    cache = BlockCache(1000)
    cache.insert((1, 0), "a", 100)
    cache.insert((1, 0), "b", 300)
    assert cache.get((1, 0)) == "b"
    assert cache.stats()["usage"] == 300 and cache.stats()["entries"] == 1


def test_erase_file_drops_only_that_file():
    cache = BlockCache(10_000)
    for f in (1, 2, 3):
        for off in range(0, 500, 100):
            cache.insert((f, off), (f, off), 10)
    cache.erase_file(2)
    cache.erase_file(42)  # unknown file: nothing happens
    assert all(cache.get((2, off)) is None for off in range(0, 500, 100))
    assert all(cache.get((f, off)) == (f, off) for f in (1, 3) for off in range(0, 500, 100))
    assert cache.stats()["usage"] == 100 and cache.stats()["entries"] == 10
    cache.erase((1, 0))
    assert cache.get((1, 0)) is None and cache.stats()["usage"] == 90
    # Eviction keeps the per-file index in step: erase_file after evictions is consistent.
    small = BlockCache(30)
    for off in range(10):
        small.insert((7, off), off, 10)
    small.erase_file(7)
    assert small.stats()["usage"] == 0 and small.stats()["entries"] == 0


def test_usage_never_exceeds_capacity_under_threads():
    cache = BlockCache(5_000)
    errors = []

    def worker(seed):
        rng = random.Random(seed)
        try:
            for _ in range(3000):
                key = (rng.randrange(4), rng.randrange(50))
                op = rng.random()
                if op < 0.5:
                    value = cache.get(key)
                    assert value is None or value == key
                elif op < 0.95:
                    cache.insert(key, key, rng.randrange(1, 400))
                else:
                    cache.erase_file(key[0])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    s = cache.stats()
    assert 0 <= s["usage"] <= s["capacity"]
    assert s["usage"] == sum(cache._charges.values())
    assert s["entries"] == len(cache._charges) == len(cache._entries)


def test_admission_control_once_full():
    """With admit_every=4, a full cache takes one new block in four; a block asked for again gets in."""
    cache = BlockCache(100, admit_every=4)
    for i in range(10):                      # not full yet: everything is admitted
        cache.insert((1, i), i, 10)
    assert cache.stats()["entries"] == 10 and cache.stats()["declined"] == 0
    admitted = 0
    for i in range(10, 30):                  # full: 1 in 4 new blocks evicts an old one
        cache.insert((1, i), i, 10)
        admitted += cache.get((1, i)) is not None
    assert admitted == 5
    s = cache.stats()
    assert s["declined"] == 15 and s["usage"] <= 100 and s["entries"] == 10
    for _ in range(4):                       # a block that keeps missing is admitted within 4 tries
        cache.insert((2, 0), "hot", 10)
    assert cache.get((2, 0)) == "hot"
