"""Fixtures that run every engine contract test against both engines.

``engine_kind`` is "memory" (tabledb.storage.memory.MemoryEngine) or "lsm"
(tabledb.storage.Engine). ``harness`` opens, reopens and cleans up databases of
that kind at a fresh path; ``db`` is an engine the harness opened.

Both kinds get the same small LSM options, so that a handful of writes fills a
memtable, a few flushes trigger a compaction, and blocks hold a few entries
(MemoryEngine accepts and ignores them).
"""

from __future__ import annotations

import itertools
import os
import shutil

import pytest

from tabledb.storage.memory import MemoryEngine

SMALL_OPTIONS = {
    "memtable_bytes": 4096,
    "target_file_bytes": 8192,
    "block_size": 256,
    "l0_compaction_trigger": 2,
    "level1_bytes": 32768,
}

# The contract tests run the LSM engine in the foreground, so that flushes and
# compactions happen at the same points on every run; the model test varies it.
CONTRACT_OPTIONS = {**SMALL_OPTIONS, "background": False}

ENGINE_KINDS = ["memory", "lsm"]


def engine_class(kind: str):
    """The engine class for ``kind``; skips the test while the LSM engine does not exist yet."""
    if kind == "memory":
        return MemoryEngine
    if kind == "lsm":
        from tabledb.storage import Engine

        return Engine
    raise ValueError(f"unknown engine kind {kind!r}")


class EngineHarness:
    """Opens databases of one kind under ``base`` and cleans them up.

    ``open(**options)`` opens the harness's database (``self.path``) with the
    default options updated by ``options``; ``reopen(**options)`` closes the
    engine it opened last and opens the same path again; ``open_at(path)``
    opens another database (a checkpoint, say). ``cleanup()`` closes every
    engine opened and forgets the MemoryEngine state of every path opened or
    passed to ``track``.
    """

    def __init__(self, kind: str, base: str, options: dict | None = None):
        self.kind = kind
        self.engine_class = engine_class(kind)
        self.base = base
        self.path = os.path.join(base, "db")
        self.options = dict(CONTRACT_OPTIONS if options is None else options)
        self.db = None
        self._engines = []
        self._paths = {self.path}

    def open(self, create: bool = True, **options):
        self.db = self.open_at(self.path, create=create, **options)
        return self.db

    def reopen(self, **options):
        if self.db is not None:
            self.db.close()
        return self.open(**options)

    def track(self, path) -> str:
        """Remember ``path`` (a checkpoint, say) so that ``cleanup`` forgets it; return it."""
        path = os.fspath(path)
        self._paths.add(path)
        return path

    def open_at(self, path, create: bool = True, **options):
        path = self.track(path)
        engine = self.engine_class.open(path, create=create, **{**self.options, **options})
        self._engines.append(engine)
        return engine

    def cleanup(self) -> None:
        for engine in self._engines:
            engine.close()
        self._engines.clear()
        self.db = None
        if self.kind == "memory":
            for path in self._paths:
                MemoryEngine.destroy(path)


@pytest.fixture(params=ENGINE_KINDS)
def engine_kind(request) -> str:
    engine_class(request.param)  # skip early if the engine does not exist
    return request.param


@pytest.fixture
def harness(engine_kind, tmp_path):
    h = EngineHarness(engine_kind, str(tmp_path))
    yield h
    h.cleanup()


@pytest.fixture
def harness_factory(engine_kind, tmp_path):
    """``make(**overrides)``: a new harness in a fresh directory each call (for hypothesis examples).

    Its engines open with SMALL_OPTIONS updated by ``overrides``.
    """
    counter = itertools.count()
    made = []

    def make(**overrides) -> EngineHarness:
        base = os.path.join(str(tmp_path), f"ex{next(counter)}")
        os.makedirs(base)
        h = EngineHarness(engine_kind, base, {**SMALL_OPTIONS, **overrides})
        made.append(h)
        return h

    yield make
    for h in made:
        h.cleanup()
        shutil.rmtree(h.base, ignore_errors=True)


@pytest.fixture
def db(harness):
    return harness.open()
