"""The DB-API 2.0 compliance suite (PyPI ``dbapi-compliance``, module ``dbapi20``) against tabledb.

It runs twice: on in-memory databases and on a database directory, which each
test's connections share (the suite's tearDown drops its tables through a new
connection). The suite leaves two tests to the driver; they are written here.
"""

from __future__ import annotations

import shutil
import tempfile

import dbapi20  # the suite asks to be imported as a module, so that its base class is not collected

import tabledb


class CompliesInMemory(dbapi20.DatabaseAPI20Test):  # a unittest.TestCase: pytest collects it
    driver = tabledb
    connect_args = (":memory:",)
    connect_kw_args: dict = {}

    def test_nextset(self):
        # The suite's own test needs a stored procedure with two result sets; tabledb
        # has neither, and so no nextset() (PEP 249 makes it optional).
        con = self._connect()
        try:
            self.assertFalse(hasattr(con.cursor(), "nextset"))
        finally:
            con.close()

    def test_setoutputsize(self):
        # setoutputsize() is accepted and ignored: tabledb never truncates a value.
        con = self._connect()
        try:
            cur = con.cursor()
            self.executeDDL1(cur)
            long_name = "x" * 10_000
            cur.execute(f"insert into {self.table_prefix}booze values (?)", (long_name,))
            cur.setoutputsize(10)
            cur.setoutputsize(10, 0)
            cur.execute(f"select name from {self.table_prefix}booze")
            self.assertEqual(cur.fetchall(), [(long_name,)])
        finally:
            con.close()


class CompliesOnDisk(CompliesInMemory):
    connect_kw_args = {"sync": False}

    def setUp(self):
        super().setUp()
        self.directory = tempfile.mkdtemp(prefix="tabledb-dbapi20-")
        self.connect_args = (self.directory + "/db",)

    def tearDown(self):
        super().tearDown()
        shutil.rmtree(self.directory, ignore_errors=True)

