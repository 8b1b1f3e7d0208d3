"""tabledb.arrow: results to Arrow, Arrow into tables, COPY to and from Parquet and CSV.

The fast paths are checked against the reference code they replace: the batch
decoder of stored rows against ``rowcodec.decode_row``, the Arrow-kernel
encoder of keys, rows and index entries against ``keys.KeyCodec``,
``TableWriter`` and ``IndexWriter`` (byte for byte), and every load against the
same rows inserted through SQL.
"""

from __future__ import annotations

import datetime as dt
import math
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tabledb
from tabledb import arrow
from tabledb.errors import CorruptionError, DataError, IntegrityError, OperationalError, ProgrammingError
from tabledb.sql import keys
from tabledb.sql.rowcodec import decode_row, encode_row

ALL_TYPES = ("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, ok BOOLEAN, day DATE, "
             "ts TIMESTAMP, data BLOB)")
ALL_SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64()), ("ok", pa.bool_()),
                        ("day", pa.date32()), ("ts", pa.timestamp("us")), ("data", pa.binary())])


def all_types_rows(n: int, seed: int = 1) -> list[tuple]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append((
            i * 3 - n,
            None if i % 7 == 0 else rng.choice(["", "a\x00b", "ünïcode ☃", "x" * rng.randrange(40), f"n{i}"]),
            None if i % 11 == 0 else rng.choice([0.0, -1.5, 1e300, -2.5e-300, math.inf, rng.random()]),
            None if i % 5 == 0 else i % 3 == 0,
            None if i % 13 == 0 else dt.date(1, 1, 1) + dt.timedelta(days=rng.randrange(3_000_000)),
            None if i % 17 == 0 else dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=rng.randrange(-10**15, 10**17)),
            None if i % 4 == 0 else bytes(rng.randrange(256) for _ in range(rng.randrange(6))),
        ))
    return rows


@pytest.fixture
def conn():
    c = tabledb.connect(":memory:")
    yield c
    c.close()


@pytest.fixture
def filled(conn):
    conn.execute(ALL_TYPES)
    rows = all_types_rows(500)
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    return conn, sorted(rows)


def as_rows(table: pa.Table) -> list[tuple]:
    return [tuple(r.values()) for r in table.to_pylist()]


def stored(conn, name: str) -> list[tuple[bytes, bytes]]:
    """Every key and value of a table (rows and indexes), keys without their table prefix."""
    table = conn._session.current_catalog().table(name)
    start, end = table.key_range
    plen = len(keys.table_prefix(table.id))
    return [(k[plen:], v) for k, v in conn._session.engine.scan(start, end)]


# ---------------------------------------------------------------------------- export


def test_fetch_arrow_table_types_values_and_nulls(filled):
    conn, rows = filled
    table = conn.execute("SELECT * FROM t").fetch_arrow_table()
    assert table.schema == ALL_SCHEMA
    assert as_rows(table) == rows
    assert table.column("name").null_count == sum(1 for r in rows if r[1] is None)


def test_fetch_arrow_table_of_computed_columns(conn):
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"n{i}") for i in range(10)])
    cur = conn.execute("SELECT id, id * 1.5 AS x, name || '!' AS y, NULL AS z, "
                       "CASE WHEN id < 5 THEN id ELSE 0.5 END AS w FROM t ORDER BY id")
    table = cur.fetch_arrow_table()
    assert table.column_names == ["id", "x", "y", "z", "w"]
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("x").type == pa.float64()
    assert table.schema.field("y").type == pa.string()
    assert table.schema.field("z").type == pa.null()
    assert table.schema.field("w").type == pa.float64()     # ints and floats together
    assert table.column("w").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5, 0.5]


def test_computed_column_typed_by_later_batches(conn):
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
    sql = "SELECT id, CASE WHEN id >= 6 THEN id * 2 END AS late FROM t ORDER BY id"
    reader = arrow.fetch_record_batch(conn.execute(sql), rows_per_batch=3)
    assert reader.schema.field("late").type == pa.int64()   # read ahead past the all-NULL batches
    assert reader.read_all().column("late").to_pylist() == [None] * 6 + [12, 14, 16, 18]


def test_empty_result_keeps_the_schema(filled):
    conn, _rows = filled
    table = conn.execute("SELECT * FROM t WHERE id > 10000000").fetch_arrow_table()
    assert table.num_rows == 0 and table.schema == ALL_SCHEMA
    reader = conn.execute("SELECT * FROM t WHERE id > 10000000").fetch_record_batch(rows_per_batch=10)
    assert reader.schema == ALL_SCHEMA and reader.read_all().num_rows == 0


def test_record_batch_reader_streams(filled):
    conn, rows = filled
    # a filter keeps the query off the stored-scan fast path, so the reader pulls from the cursor
    cur = conn.execute("SELECT * FROM t WHERE id = id")
    reader = arrow.fetch_record_batch(cur, rows_per_batch=64)
    first = reader.read_next_batch()
    assert first.num_rows == 64 and first.schema == ALL_SCHEMA
    # the cursor was read just one batch ahead: the rest is still in it
    assert cur.fetchone() == rows[64]
    rest = list(reader)
    assert all(b.num_rows <= 64 for b in rest)
    assert as_rows(pa.Table.from_batches([first] + rest)) == rows[:64] + rows[65:]
    assert cur.fetchall() == []


def test_stored_scan_reader_takes_the_whole_result(filled):
    conn, rows = filled
    cur = conn.execute("SELECT * FROM t")
    reader = arrow.fetch_record_batch(cur, rows_per_batch=64)
    batches = list(reader)
    assert all(b.num_rows <= 64 for b in batches)
    assert as_rows(pa.Table.from_batches(batches)) == rows
    assert cur.fetchall() == []


def test_fetch_after_fetchone_returns_the_rest(filled):
    conn, rows = filled
    cur = conn.execute("SELECT * FROM t")
    cur.fetchone()
    assert as_rows(cur.fetch_arrow_table()) == rows[1:]
    assert cur.fetch_arrow_table().num_rows == 0


def test_pyarrow_table_of_a_cursor(filled):
    conn, rows = filled
    table = pa.table(conn.execute("SELECT * FROM t WHERE id < 0"))
    assert table.schema == ALL_SCHEMA
    assert as_rows(table) == [r for r in rows if r[0] < 0]


def test_fetch_needs_a_result(conn):
    cur = conn.cursor()
    with pytest.raises(ProgrammingError):
        arrow.fetch_arrow_table(cur)
    conn.execute("CREATE TABLE t(a INTEGER)")
    with pytest.raises(ProgrammingError):
        conn.execute("INSERT INTO t VALUES (1)").fetch_arrow_table()
    with pytest.raises(ProgrammingError):
        arrow.fetch_record_batch(conn.execute("SELECT * FROM t"), rows_per_batch=0)


def test_table_reader_equals_the_query(filled):
    conn, rows = filled
    expected = conn.execute("SELECT * FROM t").fetch_arrow_table()
    for size in (1, 7, 500, 65536):
        got = arrow.table_reader(conn, "t", rows_per_batch=size).read_all()
        assert got.equals(expected), size


def test_table_reader_sees_the_transactions_writes(filled):
    conn, rows = filled
    conn.execute("DELETE FROM t WHERE id < 0")
    conn.execute("INSERT INTO t(id, name) VALUES (100000, 'new')")
    got = as_rows(arrow.table_reader(conn, "t").read_all())
    assert got == [r for r in rows if r[0] >= 0] + [(100000, "new", None, None, None, None, None)]
    conn.rollback()
    assert as_rows(arrow.table_reader(conn, "t").read_all()) == rows


def test_table_reader_pads_rows_stored_before_add_column(conn):
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"a{i}") for i in range(5)])
    conn.execute("ALTER TABLE t ADD COLUMN b INTEGER DEFAULT 7")
    conn.execute("ALTER TABLE t ADD COLUMN c REAL")
    conn.execute("INSERT INTO t VALUES (5, 'x', 1, 2.5)")
    got = as_rows(arrow.table_reader(conn, "t").read_all())
    assert got == [(i, f"a{i}", 7, None) for i in range(5)] + [(5, "x", 1, 2.5)]
    assert got == conn.execute("SELECT * FROM t").fetchall()


def random_rows_of_types(types: list[str], n: int, rng: random.Random) -> list[tuple]:
    def value(t):
        if rng.random() < 0.15:
            return None
        if t == "INTEGER":
            return rng.choice([0, 1, -1, 127, -128, 128, 40000, -40000, 2**31, -(2**63), 2**63 - 1,
                               rng.randrange(-(2**63), 2**63)])
        if t == "REAL":
            return rng.choice([0.0, -0.25, 1e308, -math.inf, rng.uniform(-1e6, 1e6)])
        if t == "TEXT":
            return "".join(rng.choice("ab\x00é☃") for _ in range(rng.randrange(5)))
        if t == "BLOB":
            return bytes(rng.randrange(256) for _ in range(rng.randrange(5)))
        if t == "BOOLEAN":
            return rng.random() < 0.5
        if t == "DATE":
            return dt.date(1, 1, 1) + dt.timedelta(days=rng.randrange(3_652_059))
        return dt.datetime(1, 1, 1) + dt.timedelta(microseconds=rng.randrange(315_537_897_600_000_000))
    return [tuple(value(t) for t in types) for _ in range(n)]


@pytest.mark.parametrize("seed", range(6))
def test_batch_decoder_equals_decode_row(seed):
    rng = random.Random(seed)
    names = ["INTEGER", "REAL", "TEXT", "BLOB", "BOOLEAN", "DATE", "TIMESTAMP"]
    types = [rng.choice(names) for _ in range(rng.randrange(1, 7))]
    rows = random_rows_of_types(types, 300, rng)
    values = [encode_row(r) for r in rows]     # narrowest integer tags: many layouts in one batch
    decoder = arrow._StoredRowDecoder(types, (None,) * len(types), [f"c{i}" for i in range(len(types))])
    columns = decoder._vectorized(values)
    assert columns is not None, types
    assert [tuple(c[i].as_py() for c in columns) for i in range(len(rows))] == [decode_row(v) for v in values]


def test_batch_decoder_falls_back_on_damage():
    types = ["INTEGER", "TEXT"]
    values = [encode_row((i, f"v{i}")) for i in range(10)]
    decoder = arrow._StoredRowDecoder(types, (None, None), ["a", "b"])
    values[3] = values[3][:-1]                     # a truncated row
    assert decoder._vectorized(values) is None
    with pytest.raises(CorruptionError):
        decoder.decode(values)
    values[3] = encode_row((3, "v3"))[:-2] + b"\xff\xfe"   # not UTF-8
    with pytest.raises(CorruptionError):
        decoder.decode(values)


def test_stored_scan_protocol(filled):
    """A result iterator that offers stored_scan() is exported from the stored rows, then closed."""
    conn, rows = filled
    session = conn._session
    table = session.current_catalog().table("t")

    class Rows:
        closed = False

        def __iter__(self):
            return self

        def __next__(self):
            raise AssertionError("the rows should be decoded from storage")

        def stored_scan(self):
            from tabledb.sql.txn import Transaction
            return Transaction(session.engine, None), table, (None,) * 7, [table.row_range]

        def close(self):
            Rows.closed = True

    cur = conn.execute("SELECT * FROM t")
    cur._rows = Rows()
    assert as_rows(arrow.fetch_arrow_table(cur)) == rows
    assert Rows.closed


# ---------------------------------------------------------------------------- the Arrow-kernel encoder


@pytest.mark.parametrize("seed", range(4))
def test_vector_encoder_matches_the_row_writer(conn, seed):
    rng = random.Random(seed)
    conn.execute("CREATE TABLE t(i INTEGER, r REAL, s TEXT, b BLOB, o BOOLEAN, d DATE, ts TIMESTAMP, "
                 "PRIMARY KEY (s, i))")
    conn.execute("CREATE INDEX t_r ON t(r DESC, o)")
    conn.execute("CREATE UNIQUE INDEX t_u ON t(d, ts DESC, b)")
    conn.execute("CREATE INDEX t_b ON t(b)")
    conn.commit()
    session = conn._session
    table = session.current_catalog().table("t")
    types = list(table.types)
    rows = random_rows_of_types(types, 200, rng)
    rows = [(r[0] if r[0] is not None else 0, *r[1:2], r[2] if r[2] is not None else "", *r[3:]) for r in rows]
    cols = [pa.array([r[p] for r in rows], arrow.ARROW_TYPES[t]) for p, t in enumerate(types)]
    cols[1] = arrow._normalize(cols[1], "REAL")          # -0.0 -> 0.0, as the writer stores it
    encoded = arrow._VectorEncoder(table).encode(cols, None)
    from tabledb.sql.expressions import Runtime
    from tabledb.sql.planner import Planner
    from tabledb.sql.writer import TableWriter
    writer = TableWriter(session, table, Planner(session.current_catalog(), Runtime(session), {}))
    for i, row in enumerate(rows):
        row = [0.0 if v == 0.0 and isinstance(v, float) else v for v in row]
        key = writer.key_of(row)
        assert encoded.keys[i].as_py() == key
        assert decode_row(encoded.values[i].as_py()) == tuple(row)
        suffix = key[len(table.row_prefix):]
        for (ikeys, ivalues), iw in zip(encoded.indexes, writer.indexes):
            ikey, ivalue, _checks = iw.entry(row, suffix)
            assert ikeys[i].as_py() == ikey
            assert (ivalues[i].as_py() if ivalues is not None else b"") == ivalue


# ---------------------------------------------------------------------------- ingest


def test_ingest_equals_sql_inserts_byte_for_byte(conn):
    schema = ("(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, ok BOOLEAN, day DATE, ts TIMESTAMP, "
              "data BLOB, UNIQUE (name))")
    conn.execute(f"CREATE TABLE a{schema}")
    conn.execute(f"CREATE TABLE b{schema}")
    conn.execute("CREATE INDEX a_day ON a(day DESC, score)")
    conn.execute("CREATE INDEX b_day ON b(day DESC, score)")
    conn.commit()
    rows = [(r[0], f"n{i}", *r[2:]) for i, r in enumerate(all_types_rows(400, seed=3))]
    random.Random(5).shuffle(rows)
    assert conn.ingest_arrow("a", pa.Table.from_pylist([dict(zip(ALL_SCHEMA.names, r)) for r in rows],
                                                       schema=ALL_SCHEMA)) == 400
    conn.executemany("INSERT INTO b VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    got, want = stored(conn, "a"), stored(conn, "b")
    assert [k for k, _ in got] == [k for k, _ in want]
    rows_a = [decode_row(v) if k[:1] == b"\x00" else v for k, v in got]
    rows_b = [decode_row(v) if k[:1] == b"\x00" else v for k, v in want]
    assert rows_a == rows_b
    assert conn.execute("SELECT * FROM a ORDER BY id").fetchall() == sorted(rows)
    assert conn.execute("SELECT id FROM a WHERE name = 'n7'").fetchall() == [(r[0],) for r in rows if r[1] == "n7"]


def test_ingest_takes_the_sstable_path_outside_a_transaction(tmp_path):
    c = tabledb.connect(str(tmp_path / "db"))
    try:
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        c.execute("CREATE INDEX t_v ON t(v)")
        c.commit()
        data = pa.table({"id": pa.array(range(1000), pa.int64()), "v": [f"v{i % 10}" for i in range(1000)]})
        assert c.ingest_arrow("t", data) == 1000
        assert c._session.engine.stats()["ingested_files"] >= 1
        assert not c.in_transaction
        assert c.execute("SELECT count(*) FROM t WHERE v = 'v3'").fetchone() == (100,)
        # the next automatic id follows the ingested ones
        c.execute("INSERT INTO t(v) VALUES ('x')")
        assert c.execute("SELECT max(id) FROM t").fetchone() == (1000,)
        c.commit()
    finally:
        c.close()
    c = tabledb.connect(str(tmp_path / "db"))
    try:
        assert c.execute("SELECT count(*), sum(id) FROM t").fetchone() == (1001, sum(range(1001)))
    finally:
        c.close()


def test_ingest_big_equals_the_source(tmp_path):
    n = 200_000
    rng = random.Random(9)
    ids = list(range(n))
    rng.shuffle(ids)                               # not in key order: the load sorts
    source = pa.table({"id": pa.array(ids, pa.int64()),
                       "name": pa.array([f"name-{i}" for i in ids]),
                       "score": pa.array([rng.random() * 100 for _ in ids]),
                       "tag": pa.array([None if i % 97 == 0 else f"tag-{i % 100:02d}" for i in ids])})
    c = tabledb.connect(str(tmp_path / "db"))
    try:
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, tag TEXT)")
        c.commit()
        assert c.ingest_arrow("t", source) == n
        got = c.execute("SELECT * FROM t").fetch_arrow_table()
        assert got.equals(source.sort_by("id"))
        assert arrow.table_reader(c, "t").read_all().equals(got)
        assert c.execute("SELECT count(*) FROM t WHERE tag IS NULL").fetchone() == (len(range(0, n, 97)),)
    finally:
        c.close()


def test_ingest_modes(conn):
    data = pa.table({"a": pa.array([1, 2, 3], pa.int64()), "b": ["x", None, "z"]})
    assert conn.ingest_arrow("t", data, mode="create") == 3
    assert conn.execute("SELECT a, b FROM t ORDER BY a").fetchall() == [(1, "x"), (2, None), (3, "z")]
    assert conn.execute("SELECT rowid FROM t ORDER BY rowid").fetchall() == [(1,), (2,), (3,)]
    with pytest.raises(ProgrammingError, match="already exists"):
        conn.ingest_arrow("t", data, mode="create")
    assert conn.ingest_arrow("t", data, mode="append") == 3
    assert conn.execute("SELECT count(*), max(rowid) FROM t").fetchone() == (6, 6)
    other = pa.table({"c": pa.array([1.5], pa.float32())})
    assert conn.ingest_arrow("t", other, mode="replace") == 1
    assert conn.execute("SELECT * FROM t").fetchall() == [(1.5,)]
    assert [r[0] for r in conn.execute("SHOW TABLES").fetchall()] == ["t"]
    with pytest.raises(ProgrammingError):
        conn.ingest_arrow("t", data, mode="upsert")
    with pytest.raises(ProgrammingError, match="no such table"):
        conn.ingest_arrow("nope", data)


def test_create_maps_arrow_types(conn):
    data = pa.table({
        "i8": pa.array([1], pa.int8()), "u32": pa.array([7], pa.uint32()), "f32": pa.array([0.5], pa.float32()),
        "dec": pa.array([1], pa.decimal128(5, 2)), "ls": pa.array(["s"], pa.large_string()),
        "dict": pa.array(["d"]).dictionary_encode(), "fsb": pa.array([b"ab"], pa.binary(2)),
        "b": pa.array([True]), "d64": pa.array([dt.date(2024, 1, 2)], pa.date64()),
        "tz": pa.array([dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc)], pa.timestamp("ns", tz="Europe/Paris")),
        "n": pa.nulls(1),
    })
    conn.ingest_arrow("t", data, mode="create")
    described = {r[0]: r[1] for r in conn.execute("DESCRIBE t").fetchall()}
    assert described == {"i8": "INTEGER", "u32": "INTEGER", "f32": "REAL", "dec": "REAL", "ls": "TEXT",
                         "dict": "TEXT", "fsb": "BLOB", "b": "BOOLEAN", "d64": "DATE", "tz": "TIMESTAMP",
                         "n": "TEXT"}
    assert conn.execute("SELECT * FROM t").fetchall() == [
        (1, 7, 0.5, 1.0, "s", "d", b"ab", True, dt.date(2024, 1, 2), dt.datetime(2024, 1, 1, 12), None)]
    with pytest.raises(DataError, match='"l"'):
        conn.ingest_arrow("u", pa.table({"l": pa.array([[1]])}), mode="create")
    assert "u" not in [r[0] for r in conn.execute("SHOW TABLES").fetchall()]


def test_schema_mismatch_names_the_column_and_writes_nothing(conn):
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, day DATE)")
    conn.execute("INSERT INTO t VALUES (1, 'a', NULL)")
    conn.commit()
    cases = [
        (pa.table({"id": [5], "nmae": ["x"]}), "nmae"),
        (pa.table({"id": ["5"]}), "id"),                                   # text into INTEGER
        (pa.table({"id": [5], "name": [3]}), "name"),                       # int into TEXT
        (pa.table({"id": [5], "day": pa.array([1.0])}), "day"),
        (pa.table({"id": pa.array([5.5])}), "id"),                          # 5.5 is not an INTEGER
        (pa.table({"id": pa.array([2**63], pa.uint64())}), "id"),
        (pa.table({"id": [5], "day": pa.array([dt.datetime(2024, 1, 1, 1)])}), "day"),   # not midnight
        (pa.table({"id": [5], "ID": [6]}), "ID"),                           # twice
    ]
    for data, column in cases:
        with pytest.raises(DataError, match=column):
            conn.ingest_arrow("t", data)
        assert conn.execute("SELECT * FROM t").fetchall() == [(1, "a", None)]
    conn.execute("CREATE TABLE r(x REAL)")
    with pytest.raises(DataError, match="NaN"):
        conn.ingest_arrow("r", pa.table({"x": [1.0, math.nan]}))
    with pytest.raises(DataError, match="exactly"):
        conn.ingest_arrow("r", pa.table({"x": pa.array([2**63 - 1], pa.int64())}))
    assert not conn.in_transaction or conn.execute("SELECT count(*) FROM r").fetchone() == (0,)


def test_lossless_conversions(conn):
    conn.execute("CREATE TABLE t(i INTEGER, r REAL, o BOOLEAN, d DATE, ts TIMESTAMP)")
    conn.commit()
    data = pa.table({"i": pa.array([3.0, None]), "r": pa.array([2**53, -0], pa.int64()),
                     "o": pa.array([1, 0], pa.int8()),
                     "d": pa.array([dt.datetime(2024, 5, 1), None], pa.timestamp("s")),
                     "ts": pa.array([dt.date(2024, 5, 1), None])})
    conn.ingest_arrow("t", data)
    assert conn.execute("SELECT * FROM t").fetchall() == [
        (3, float(2**53), True, dt.date(2024, 5, 1), dt.datetime(2024, 5, 1)), (None, 0.0, False, None, None)]
    neg_zero = conn.execute("SELECT r FROM t WHERE r = 0").fetchone()[0]
    assert math.copysign(1, neg_zero) == 1
    with pytest.raises(DataError, match="nanoseconds"):
        conn.ingest_arrow("t", pa.table({"ts": pa.array([1], pa.timestamp("ns"))}))
    with pytest.raises(DataError, match='"o"'):
        conn.ingest_arrow("t", pa.table({"o": pa.array([2], pa.int64())}))


def test_duplicates_and_conflicts_raise_integrity_errors(conn):
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, u TEXT UNIQUE, n TEXT NOT NULL DEFAULT 'n')")
    conn.commit()
    with pytest.raises(IntegrityError, match="t.id"):
        conn.ingest_arrow("t", pa.table({"id": [1, 2, 1], "u": ["a", "b", "c"]}))
    with pytest.raises(IntegrityError, match="t.u"):
        conn.ingest_arrow("t", pa.table({"id": [1, 2, 3], "u": ["a", "b", "a"]}))
    with pytest.raises(IntegrityError, match="NOT NULL"):
        conn.ingest_arrow("t", pa.table({"id": [1], "n": pa.array([None], pa.string())}))
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    conn.ingest_arrow("t", pa.table({"id": [1, 2], "u": ["a", None]}))
    # the table has rows now: every new row is checked against them
    with pytest.raises(IntegrityError, match="t.id"):
        conn.ingest_arrow("t", pa.table({"id": [3, 1], "u": ["x", "y"]}))
    with pytest.raises(IntegrityError, match="t.u"):
        conn.ingest_arrow("t", pa.table({"id": [0], "u": ["a"]}))
    conn.ingest_arrow("t", pa.table({"id": [0, 5], "u": [None, "b"]}))     # NULLs never collide
    assert conn.execute("SELECT * FROM t ORDER BY id").fetchall() == [
        (0, None, "n"), (1, "a", "n"), (2, None, "n"), (5, "b", "n")]


def test_checks_and_partial_ids_go_row_by_row(conn):
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER CHECK (v > 0))")
    conn.commit()
    with pytest.raises(IntegrityError, match="CHECK"):
        conn.ingest_arrow("t", pa.table({"id": [1, 2], "v": [5, -5]}))
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    conn.ingest_arrow("t", pa.table({"id": pa.array([10, None, None, 4, None]), "v": [1, 2, 3, 4, 5]}))
    assert conn.execute("SELECT * FROM t ORDER BY v").fetchall() == [(10, 1), (11, 2), (12, 3), (4, 4), (13, 5)]
    conn.ingest_arrow("t", pa.table({"v": [6, 7]}))                        # ids numbered on
    assert conn.execute("SELECT id FROM t WHERE v >= 6 ORDER BY v").fetchall() == [(14,), (15,)]


def test_ingest_appends_after_the_last_key_and_numbers_hidden_rowids(conn):
    conn.execute("CREATE TABLE h(a INTEGER, b TEXT)")
    conn.execute("CREATE INDEX h_b ON h(b)")
    conn.execute("INSERT INTO h VALUES (1, 'x')")
    conn.commit()
    conn.ingest_arrow("h", pa.table({"b": ["y", "x"], "a": [2, 3]}))
    conn.execute("INSERT INTO h VALUES (4, 'z')")
    assert conn.execute("SELECT rowid, a, b FROM h ORDER BY rowid").fetchall() == [
        (1, 1, "x"), (2, 2, "y"), (3, 3, "x"), (4, 4, "z")]
    assert conn.execute("SELECT a FROM h WHERE b = 'x' ORDER BY a").fetchall() == [(1,), (3,)]


def test_ingest_inside_a_transaction_joins_it(conn):
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (100)")
    conn.ingest_arrow("t", pa.table({"id": [1, 2]}))
    conn.ingest_arrow("n", pa.table({"x": [1]}), mode="create")
    assert conn.in_transaction
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert conn.execute("SHOW TABLES").fetchall() == [("t",)]
    conn.execute("INSERT INTO t VALUES (100)")                             # an implicit transaction
    conn.ingest_arrow("t", pa.table({"id": [1, 2]}))
    conn.commit()
    assert conn.execute("SELECT id FROM t").fetchall() == [(1,), (2,), (100,)]


def test_failed_replace_keeps_the_old_table(conn):
    conn.execute("CREATE TABLE t(a TEXT)")
    conn.execute("INSERT INTO t VALUES ('old')")
    conn.commit()
    bad = pa.table({"a": pa.array(["x", "\ud800".encode("utf-8", "surrogatepass")], pa.binary()).cast(pa.string(), safe=False)})
    with pytest.raises(DataError):
        conn.ingest_arrow("t", bad, mode="replace")
    assert conn.execute("SELECT * FROM t").fetchall() == [("old",)]
    assert conn.execute("SHOW TABLES").fetchall() == [("t",)]


def test_ingest_sources(conn):
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.commit()
    table = pa.table({"id": pa.array(range(10), pa.int64()), "v": [str(i) for i in range(10)]})
    assert conn.ingest_arrow("t", table.to_batches(max_chunksize=3)[0]) == 3
    assert conn.ingest_arrow("t", table.slice(3).to_reader(max_chunksize=2)) == 7

    class Stream:
        def __arrow_c_stream__(self, requested_schema=None):
            return table.__arrow_c_stream__(requested_schema)
    conn.ingest_arrow("u", Stream(), mode="create")
    assert conn.execute("SELECT * FROM u").fetchall() == conn.execute("SELECT * FROM t").fetchall()
    with pytest.raises(ProgrammingError):
        conn.ingest_arrow("t", [(1, "a")])


def test_ingest_from_a_cursor(filled):
    conn, rows = filled
    assert conn.ingest_arrow("copy", conn.execute("SELECT * FROM t"), mode="create") == len(rows)
    assert conn.execute("SELECT * FROM copy").fetchall() == rows


# ---------------------------------------------------------------------------- COPY


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_copy_round_trip(filled, tmp_path, fmt):
    conn, rows = filled
    path = tmp_path / f"t.{fmt}"
    assert conn.execute(f"COPY t TO '{path}'").rowcount == len(rows)
    conn.execute(ALL_TYPES.replace("TABLE t", "TABLE u"))
    assert conn.execute(f"COPY u FROM '{path}'").rowcount == len(rows)
    conn.commit()
    assert conn.execute("SELECT * FROM u").fetchall() == rows
    if fmt == "parquet":
        assert pq.read_table(path).schema == ALL_SCHEMA


def test_copy_csv_options(conn, tmp_path):
    conn.execute("CREATE TABLE t(a INTEGER, b TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(1, "x;y"), (2, ""), (3, None)])
    path = tmp_path / "t.txt"
    conn.execute(f"COPY t TO '{path}' WITH (format = 'csv', header = false, delimiter = ';')")
    assert path.read_text().splitlines() == ['1;"x;y"', '2;""', "3;"]
    conn.execute("CREATE TABLE u(a INTEGER, b TEXT)")
    conn.execute(f"COPY u FROM '{path}' WITH (format = 'csv', header = false, delimiter = ';')")
    assert conn.execute("SELECT * FROM u").fetchall() == [(1, "x;y"), (2, ""), (3, None)]
    header = tmp_path / "h.csv"
    header.write_text("B,a\nq,5\n")
    conn.execute(f"COPY u FROM '{header}'")                                # columns by name, any order
    assert conn.execute("SELECT * FROM u WHERE a = 5").fetchall() == [(5, "q")]
    bad = tmp_path / "bad.csv"
    bad.write_text("a\nfive\n")
    with pytest.raises(DataError):
        conn.execute(f"COPY u FROM '{bad}'")
    assert conn.execute("SELECT count(*) FROM u").fetchone() == (4,)


def test_copy_query_with_parameters(filled, tmp_path):
    conn, rows = filled
    path = tmp_path / "q.parquet"
    n = conn.execute(f"COPY (SELECT id, name, id * 2 AS twice FROM t WHERE id >= ? ORDER BY id DESC) TO '{path}'",
                     (0,)).rowcount
    expected = [(r[0], r[1], r[0] * 2) for r in reversed(rows) if r[0] >= 0]
    assert n == len(expected)
    got = pq.read_table(path)
    assert got.schema.field("twice").type == pa.int64()
    assert as_rows(got) == expected


def test_copy_errors(filled, tmp_path):
    conn, _rows = filled
    with pytest.raises(ProgrammingError, match="format"):
        conn.execute(f"COPY t TO '{tmp_path / 'x.json'}'")
    with pytest.raises(ProgrammingError, match="unknown COPY option"):
        conn.execute(f"COPY t TO '{tmp_path / 'x.csv'}' WITH (quote = '\"')")
    with pytest.raises(OperationalError):
        conn.execute(f"COPY t FROM '{tmp_path / 'missing.parquet'}'")
    with pytest.raises(ProgrammingError, match="no such table"):
        conn.execute(f"COPY nope TO '{tmp_path / 'x.csv'}'")
    conn.execute("CREATE VIEW v AS SELECT id FROM t")
    with pytest.raises(ProgrammingError, match="view"):
        conn.execute(f"COPY v FROM '{tmp_path / 'x.csv'}'")
    assert conn.execute(f"COPY v TO '{tmp_path / 'v.csv'}'").rowcount == 500
    assert not list(tmp_path.glob("*.tmp-*"))


def test_round_trip_through_duckdb(filled, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    conn, rows = filled
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    conn.execute(f"COPY t TO '{first}'")
    duck = duckdb.connect()
    duck.execute(f"CREATE TABLE d AS SELECT * FROM read_parquet('{first}')")
    assert duck.execute("SELECT count(*) FROM d").fetchall() == [(len(rows),)]
    duck.execute(f"COPY (SELECT * FROM d ORDER BY id) TO '{second}' (FORMAT parquet)")
    duck.close()
    conn.execute(ALL_TYPES.replace("TABLE t", "TABLE back"))
    conn.execute(f"COPY back FROM '{second}'")
    conn.commit()
    assert conn.execute("SELECT * FROM back").fetchall() == rows
    # and DuckDB reads a cursor directly through the Arrow stream interface
    duck = duckdb.connect()
    cursor = conn.execute("SELECT id, name FROM t WHERE id < 0")
    duck.register("arrow_table", pa.table(cursor))
    assert duck.sql("SELECT count(*) FROM arrow_table").fetchall() == [(sum(1 for r in rows if r[0] < 0),)]
    duck.close()


def test_failed_create_inside_a_transaction_leaves_the_transaction_as_it_was(conn):
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(DataError, match="NaN"):
        conn.ingest_arrow("t", pa.table({"x": [1.0, math.nan]}), mode="replace")
    assert conn.in_transaction
    assert conn.execute("SELECT * FROM t").fetchall() == [(1,)]
    conn.commit()
    assert conn.execute("SELECT * FROM t").fetchall() == [(1,)]
