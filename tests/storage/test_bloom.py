"""The blocked Bloom filter: no false negatives, about 1% false positives at 10 bits per key."""

from __future__ import annotations

import random
import subprocess
import sys

from tabledb.storage.bloom import BloomBuilder, BloomFilter, num_probes


def build(keys, bits_per_key=10):
    builder = BloomBuilder(bits_per_key)
    for key in keys:
        builder.add(key)
    return BloomFilter(*builder.finish())


def test_false_positive_rate_near_one_percent():
    rng = random.Random(20240501)
    keys = [rng.randbytes(16) for _ in range(10_000)]
    f = build(keys)
    assert all(f.may_contain(k) for k in keys)
    probes = [rng.randbytes(16) for _ in range(100_000)]
    rate = sum(map(f.may_contain, probes)) / len(probes)
    assert 0.004 < rate < 0.016, rate


def test_structured_keys_do_not_hurt():
    keys = [b"user:%010d" % i for i in range(0, 20_000, 2)]
    f = build(keys)
    assert all(f.may_contain(k) for k in keys)
    probes = [b"user:%010d" % i for i in range(1, 200_000, 2)]
    assert sum(map(f.may_contain, probes)) / len(probes) < 0.016


def test_more_bits_fewer_false_positives():
    rng = random.Random(3)
    keys = [rng.randbytes(8) for _ in range(5000)]
    probes = [rng.randbytes(8) for _ in range(50_000)]
    rates = [sum(map(build(keys, bpk).may_contain, probes)) / len(probes) for bpk in (4, 10, 20)]
    assert rates[0] > rates[1] > rates[2]
    assert rates[2] < 0.002
    assert num_probes(10) == 7


def test_empty_and_disabled_filters_say_maybe():
    assert build([]).may_contain(b"x")
    assert build([b"a"], bits_per_key=0).may_contain(b"x")


def test_bits_are_stable_across_processes():
    """The filter is a file format: the same keys give the same bytes in a fresh interpreter."""
    code = ("from tabledb.storage.bloom import BloomBuilder\n"
            "b = BloomBuilder(10)\n"
            "[b.add(b'key%d' % i) for i in range(300)]\n"
            "import hashlib; print(hashlib.sha256(b.finish()[2]).hexdigest())\n")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    builder = BloomBuilder(10)
    for i in range(300):
        builder.add(b"key%d" % i)
    import hashlib
    assert outs == {hashlib.sha256(builder.finish()[2]).hexdigest() + "\n"}
