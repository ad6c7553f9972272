"""psycopg 3 against a PostgreSQL-compatible server (issue 6, item 6).

Usage: python3 psycopg_test.py [URL]   (or CHITIN_DRIVER_URL; default
postgresql://root@127.0.0.1:26257/defaultdb). Prints each check; exits non-zero on the
first failure. Runs in a table namespace of its own (drops and recreates its tables).
"""

import datetime
import decimal
import os
import sys
import uuid

import psycopg
from psycopg import errors


def url():
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("CHITIN_DRIVER_URL", "postgresql://root@127.0.0.1:26257/defaultdb")


def check(name, got, want):
    if got != want:
        raise AssertionError(f"{name}: got {got!r}, want {want!r}")
    print(f"ok  {name}")


def main():
    conn = psycopg.connect(url(), autocommit=True, connect_timeout=10)
    print(f"connected: server_version {conn.info.server_version}")
    check("server_version is 15+", conn.info.server_version >= 150000, True)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS pyg_items")
        cur.execute("DROP TABLE IF EXISTS pyg_types")
        cur.execute(
            "CREATE TABLE pyg_items (id INT PRIMARY KEY, name TEXT NOT NULL UNIQUE, qty BIGINT)"
        )

        # Parameterized inserts: psycopg sends %s as $n with the values bound server side.
        cur.execute("INSERT INTO pyg_items VALUES (%s, %s, %s)", (1, "one", 10))
        check("insert rowcount", cur.rowcount, 1)
        cur.executemany(
            "INSERT INTO pyg_items (id, name, qty) VALUES (%s, %s, %s)",
            [(i, f"item{i}", i * 100) for i in range(2, 12)],
        )
        cur.execute("SELECT count(*), sum(qty) FROM pyg_items")
        check("executemany", cur.fetchone(), (11, 10 + sum(i * 100 for i in range(2, 12))))
        cur.execute("SELECT name FROM pyg_items WHERE id = %s AND qty > %s", (3, 0))
        check("select with params", cur.fetchall(), [("item3",)])
        cur.execute("SELECT name FROM pyg_items WHERE name = %(n)s", {"n": "one"})
        check("named params", cur.fetchone(), ("one",))

        # fetchmany / iteration over a result.
        cur.execute("SELECT id FROM pyg_items ORDER BY id")
        check("fetchmany(4)", cur.fetchmany(4), [(1,), (2,), (3,), (4,)])
        check("fetchmany rest", len(cur.fetchmany(100)), 7)
        check("description", cur.description[0].name, "id")

        # Types, both as text (the default) and as binary (binary=True).
        cur.execute(
            """CREATE TABLE pyg_types (
                 id INT PRIMARY KEY, i4 INT, i8 BIGINT, n NUMERIC(12,3), f FLOAT8, t TEXT,
                 b BOOL, by BYTEA, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, u UUID)"""
        )
        row = (
            1,
            -2147483648,
            9223372036854775807,
            decimal.Decimal("12345.678"),
            0.1,
            "héllo 'quoted' \\ back",
            True,
            b"\x00\x01\xff",
            datetime.date(2024, 2, 29),
            datetime.datetime(2024, 2, 29, 23, 59, 59, 123456),
            datetime.datetime(2024, 6, 1, 10, 0, 0, tzinfo=datetime.timezone.utc),
            uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        )
        cur.execute("INSERT INTO pyg_types VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", row)
        cur.execute("INSERT INTO pyg_types (id) VALUES (%s)", (2,))
        # Binary parameters too.
        cur.execute(
            "INSERT INTO pyg_types VALUES (%b,%b,%b,%b,%b,%b,%b,%b,%b,%b,%b,%b)",
            (3,) + row[1:],
        )
        for binary in (False, True):
            with conn.cursor(binary=binary) as c2:
                c2.execute("SELECT * FROM pyg_types WHERE id = 1")
                got = c2.fetchone()
                check(f"types round trip (binary={binary})", got, row)
                c2.execute("SELECT * FROM pyg_types WHERE id = 3")
                check(f"binary-bound params (binary={binary})", c2.fetchone()[1:], row[1:])
                c2.execute("SELECT * FROM pyg_types WHERE id = 2")
                check(f"NULLs (binary={binary})", c2.fetchone(), (2,) + (None,) * 11)
        cur.execute("SELECT %s::int + 1, %s::text || 'x', %s::int IS NULL", (41, "a", None))
        check("expressions over params", cur.fetchone(), (42, "ax", True))

        # An error carries its SQLSTATE; the connection stays usable.
        try:
            cur.execute("INSERT INTO pyg_items VALUES (%s, %s, %s)", (1, "dup", 0))
            raise AssertionError("duplicate key accepted")
        except errors.UniqueViolation as e:
            check("UniqueViolation sqlstate", e.sqlstate, "23505")
        try:
            cur.execute("SELECT * FROM pyg_no_such_table")
            raise AssertionError("unknown table accepted")
        except errors.UndefinedTable as e:
            check("UndefinedTable sqlstate", e.sqlstate, "42P01")
        cur.execute("SELECT 1")
        check("usable after errors", cur.fetchone(), (1,))

        # Prepared statements: prepare=True makes psycopg Parse a named statement once.
        for i in range(3):
            cur.execute("SELECT qty FROM pyg_items WHERE id = %s", (i + 1,), prepare=True)
            cur.fetchone()
        cur.execute("SELECT qty FROM pyg_items WHERE id = %s", (2,), prepare=True)
        check("prepared statement", cur.fetchone(), (200,))

    # Transactions (autocommit off).
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute("INSERT INTO pyg_items VALUES (100, 'hundred', 1)")
        conn.rollback()
        cur.execute("SELECT count(*) FROM pyg_items WHERE id = 100")
        check("rollback", cur.fetchone(), (0,))
        cur.execute("INSERT INTO pyg_items VALUES (101, 'h1', 1)")
        conn.commit()
        cur.execute("SELECT count(*) FROM pyg_items WHERE id = 101")
        check("commit", cur.fetchone(), (1,))
        conn.commit()
        # An error inside a transaction: the transaction is aborted (25P02), then rollback.
        try:
            cur.execute("INSERT INTO pyg_items VALUES (101, 'again', 1)")
            raise AssertionError("duplicate key accepted")
        except errors.UniqueViolation:
            pass
        try:
            cur.execute("SELECT 1")
            raise AssertionError("statement in a failed transaction accepted")
        except errors.InFailedSqlTransaction as e:
            check("InFailedSqlTransaction sqlstate", e.sqlstate, "25P02")
        conn.rollback()
    conn.autocommit = True
    with conn.transaction():
        conn.execute("INSERT INTO pyg_items VALUES (102, 'h2', 2)")
    try:
        with conn.transaction():
            conn.execute("INSERT INTO pyg_items VALUES (103, 'h3', 3)")
            raise RuntimeError("leave the block")
    except RuntimeError:
        pass
    ids = [r[0] for r in conn.execute("SELECT id FROM pyg_items WHERE id > 100 ORDER BY id")]
    check("with conn.transaction()", ids, [101, 102])

    # COPY FROM STDIN and TO STDOUT.
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS pyg_copy")
        cur.execute("CREATE TABLE pyg_copy (id INT PRIMARY KEY, name TEXT, amount NUMERIC(8,2))")
        with cur.copy("COPY pyg_copy (id, name, amount) FROM STDIN") as copy:
            for i in range(1, 501):
                copy.write_row((i, f"n{i}" if i % 7 else None, decimal.Decimal(i) / 4))
        check("copy from rowcount", cur.rowcount, 500)
        cur.execute("SELECT count(*), count(name), sum(amount) FROM pyg_copy")
        check("copy from contents", cur.fetchone(), (500, 429, decimal.Decimal("31312.50")))
        out = []
        with cur.copy("COPY (SELECT id, name FROM pyg_copy WHERE id <= 7 ORDER BY id) TO STDOUT") as copy:
            for r in copy.rows():
                out.append(r)
        check("copy to stdout", out[5:], [("6", "n6"), ("7", None)])
        data = b""
        with cur.copy("COPY pyg_copy TO STDOUT WITH (FORMAT csv)") as copy:
            for chunk in copy:
                data += bytes(chunk)
        check("copy csv lines", len(data.splitlines()), 500)

        cur.execute("DROP TABLE pyg_copy")
        cur.execute("DROP TABLE pyg_types")
        cur.execute("DROP TABLE pyg_items")
    conn.close()
    print("psycopg: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report any failure as a non-zero exit
        import traceback

        traceback.print_exc()
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
