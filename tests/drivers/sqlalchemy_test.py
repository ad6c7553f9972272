"""SQLAlchemy 2 (the postgresql+psycopg dialect) against a PostgreSQL-compatible server
(issue 6, item 6): declarative models, create_all, session add/commit, queries with
filters, ORDER BY, LIMIT, joins and aggregates, update and delete, reflection through the
inspector and MetaData.reflect, drop_all.

Usage: python3 sqlalchemy_test.py [URL]   (or CHITIN_DRIVER_URL; a postgresql:// URL is
used with the psycopg dialect). Set CHITIN_DRIVER_FKS=1 to declare the relationship
with a FOREIGN KEY (off by default: it needs FOREIGN KEY support in the server).
Prints each check; exits non-zero on the first failure.
"""

import datetime
import decimal
import os
import sys

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    Numeric,
    String,
    UniqueConstraint,
    create_engine,
    delete,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship


def url():
    u = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "CHITIN_DRIVER_URL", "postgresql://root@127.0.0.1:26257/defaultdb"
    )
    for prefix in ("postgresql://", "postgres://"):
        if u.startswith(prefix):
            return "postgresql+psycopg://" + u[len(prefix):]
    return u


WITH_FKS = os.environ.get("CHITIN_DRIVER_FKS") == "1"


def check(name, got, want):
    if got != want:
        raise AssertionError(f"{name}: got {got!r}, want {want!r}")
    print(f"ok  {name}")


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "sqla_authors"
    __table_args__ = {"comment": "people who write"}
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(100), unique=True, comment="as printed")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    if WITH_FKS:
        books = relationship("Book", back_populates="author")


class Book(Base):
    __tablename__ = "sqla_books"
    __table_args__ = (
        UniqueConstraint("title", "author_id", name="sqla_books_title_author_key"),
        Index("sqla_books_price_idx", "price"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    if WITH_FKS:
        author_id: Mapped[int] = mapped_column(ForeignKey("sqla_authors.id"))
        author = relationship("Author", back_populates="books")
    else:
        author_id: Mapped[int]
    title: Mapped[str] = mapped_column(String(200))
    price: Mapped[decimal.Decimal] = mapped_column(Numeric(10, 2))
    published: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    note: Mapped[str | None]


def main():
    engine = create_engine(url(), connect_args={"connect_timeout": 10})
    with engine.connect() as c:
        print("server:", c.execute(text("select version()")).scalar())
    print("server_version_info:", engine.dialect.server_version_info)
    check("server_version_info >= (9, 2)", engine.dialect.server_version_info >= (9, 2), True)

    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    check("create_all: has_table", inspect(engine).has_table("sqla_books"), True)

    with Session(engine) as s:
        s.add_all(
            [
                Author(id=1, name="Ursula"),
                Author(id=2, name="Stanislaw"),
                Author(id=3, name="Octavia", active=False),
            ]
        )
        s.commit()
        s.add_all(
            [
                Book(id=10, author_id=1, title="The Dispossessed", price=decimal.Decimal("12.50"),
                     published=datetime.datetime(1974, 5, 1)),
                Book(id=11, author_id=1, title="The Lathe of Heaven", price=decimal.Decimal("9.99")),
                Book(id=12, author_id=2, title="Solaris", price=decimal.Decimal("15.00"),
                     note="ocean"),
                Book(id=13, author_id=2, title="The Cyberiad", price=decimal.Decimal("11.25")),
                Book(id=14, author_id=3, title="Kindred", price=decimal.Decimal("8.75")),
            ]
        )
        s.commit()

        check("count", s.scalar(select(func.count()).select_from(Book)), 5)
        titles = s.scalars(
            select(Book.title).where(Book.price > 10).order_by(Book.price.desc()).limit(2)
        ).all()
        check("filter, order, limit", titles, ["Solaris", "The Dispossessed"])
        b = s.get(Book, 12)
        check("get by primary key", (b.title, b.note), ("Solaris", "ocean"))
        rows = s.execute(
            select(Author.name, func.count(Book.id), func.sum(Book.price))
            .join(Book, Book.author_id == Author.id)
            .group_by(Author.name)
            .order_by(Author.name)
        ).all()
        check(
            "join + group by + aggregates",
            [tuple(r) for r in rows],
            [
                ("Octavia", 1, decimal.Decimal("8.75")),
                ("Stanislaw", 2, decimal.Decimal("26.25")),
                ("Ursula", 2, decimal.Decimal("22.49")),
            ],
        )
        inactive = s.scalars(
            select(Book.title).join(Author, Author.id == Book.author_id).where(Author.active.is_(False))
        ).all()
        check("join with a bool filter", inactive, ["Kindred"])
        check(
            "like + in",
            sorted(s.scalars(select(Book.id).where(Book.title.like("The %"), Book.author_id.in_([1, 2])))),
            [10, 11, 13],
        )
        if WITH_FKS:
            u = s.get(Author, 1)
            check("relationship", sorted(x.title for x in u.books),
                  ["The Dispossessed", "The Lathe of Heaven"])

        b.price = decimal.Decimal("16.00")
        s.commit()
        check("ORM update", s.get(Book, 12).price, decimal.Decimal("16.00"))
        s.execute(update(Book).where(Book.author_id == 1).values(note="hainish"))
        s.execute(delete(Book).where(Book.id == 13))
        s.commit()
        check("bulk update", s.scalar(select(func.count()).where(Book.note == "hainish")), 2)
        check("bulk delete", s.scalar(select(func.count()).select_from(Book)), 4)
        s.delete(s.get(Book, 14))
        s.commit()
        check("ORM delete", s.get(Book, 14), None)

        # A failed flush rolls back; the session is usable afterwards.
        s.add(Author(id=4, name="Ursula"))
        try:
            s.commit()
            raise AssertionError("duplicate name accepted")
        except Exception as e:  # sqlalchemy.exc.IntegrityError
            check("IntegrityError sqlstate", getattr(e.orig, "sqlstate", None), "23505")
            s.rollback()
        check("usable after rollback", s.scalar(select(func.count()).select_from(Author)), 3)

    # Reflection.
    insp = inspect(engine)
    names = insp.get_table_names()
    check("get_table_names", {"sqla_authors", "sqla_books"} <= set(names), True)
    cols = insp.get_columns("sqla_books")
    check("get_columns names", [c["name"] for c in cols],
          ["id", "author_id", "title", "price", "published", "note"])
    by = {c["name"]: c for c in cols}
    check("column types", [str(by[n]["type"]) for n in ("id", "author_id", "title", "price", "published", "note")],
          ["BIGINT", "INTEGER", "VARCHAR(200)", "NUMERIC(10, 2)", "TIMESTAMP", "VARCHAR"])
    check("nullable", [by[n]["nullable"] for n in ("id", "title", "published")], [False, False, True])
    check("get_pk_constraint", insp.get_pk_constraint("sqla_books")["constrained_columns"], ["id"])
    idx = insp.get_indexes("sqla_books")
    # PostgreSQL lists the index behind a UNIQUE constraint too.
    check("get_indexes", sorted((i["name"], i["column_names"], i["unique"]) for i in idx),
          [("sqla_books_price_idx", ["price"], False),
           ("sqla_books_title_author_key", ["title", "author_id"], True)])
    uqs = insp.get_unique_constraints("sqla_books")
    check("get_unique_constraints", [(u["name"], u["column_names"]) for u in uqs],
          [("sqla_books_title_author_key", ["title", "author_id"])])
    uqs = insp.get_unique_constraints("sqla_authors")
    check("unique=True column", [u["column_names"] for u in uqs], [["name"]])
    # COMMENT ON, emitted by create_all, read back by the inspector.
    check("get_table_comment", insp.get_table_comment("sqla_authors")["text"], "people who write")
    check("column comment", {c["name"]: c.get("comment") for c in insp.get_columns("sqla_authors")}["name"],
          "as printed")
    if WITH_FKS:
        fks = insp.get_foreign_keys("sqla_books")
        check("get_foreign_keys", [(f["constrained_columns"], f["referred_table"]) for f in fks],
              [(["author_id"], "sqla_authors")])

    md = MetaData()
    md.reflect(engine, only=["sqla_authors", "sqla_books"])
    books = md.tables["sqla_books"]
    check("reflect: columns", [c.name for c in books.columns],
          ["id", "author_id", "title", "price", "published", "note"])
    check("reflect: primary key", [c.name for c in books.primary_key], ["id"])
    with engine.connect() as c:
        got = c.execute(select(books.c.title).where(books.c.id == 10)).scalar()
        check("query through reflected table", got, "The Dispossessed")

    Base.metadata.drop_all(engine)
    check("drop_all", inspect(engine).has_table("sqla_books"), False)
    engine.dispose()
    print("sqlalchemy: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report any failure as a non-zero exit
        import traceback

        traceback.print_exc()
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
