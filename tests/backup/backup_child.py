"""Run by test_kill.py: back up a database slowly, printing progress, until the parent kills it.

    python backup_child.py DB TARGET [write]

Prints "open" once the database is open, then "copied <done> <total>" after each chunk but
the last (sleeping a little each time so that the parent can kill it mid-copy). With "write",
a thread keeps inserting rows meanwhile.
"""

import sys
import threading
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])

import tabledb  # noqa: E402
from backup_helpers import SMALL  # noqa: E402


def main():
    db, target = sys.argv[1], sys.argv[2]
    conn = tabledb.connect(db, autocommit=True, **SMALL)
    print("open", flush=True)
    if len(sys.argv) > 3 and sys.argv[3] == "write":
        other = tabledb.connect(db, autocommit=True)

        def write():
            i = 10 ** 6
            while True:
                other.execute("INSERT INTO t VALUES (?, 'during', 0)", (i,))
                i += 1

        threading.Thread(target=write, daemon=True).start()

    def progress(done, total):
        if done < total:      # the last call comes once the metadata is written: not mid-copy
            print(f"copied {done} {total}", flush=True)
            time.sleep(0.05)

    conn.backup(target, progress=progress)
    print("done", flush=True)


if __name__ == "__main__":
    main()
