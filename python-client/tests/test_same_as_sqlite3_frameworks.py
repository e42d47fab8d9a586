"""SQLAlchemy, peewee and Django on sqlite_rpc, compared with the same on sqlite3 (issue 11, C).

Their SQLite backends register user-defined functions when they connect (SQLAlchemy:
regexp; peewee: its own; Django: dozens, and aggregates): registering must be accepted.
A statement that uses one of them fails when it runs, with NotSupportedError naming it.
Each framework runs a small ORM session (create the tables, add, commit, query, update,
delete) on both modules; the results must be the same.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

import sqlite_rpc

from _harness import Corpus, assert_same

C = Corpus()


# ---- registering functions: sqlite3's argument checks, then nothing -----------------------

@C.script
def registering_functions_aggregates_windows_and_collations(r):
    # (Calls with a wrong number of arguments raise TypeError on both, in Python's words here
    # and Argument Clinic's there: not compared.)
    db = r.connect()
    for label, fn in [
        ("create_function", lambda c: c.create_function("twice", 1, lambda x: 2 * x)),
        ("create_function deterministic", lambda c: c.create_function("twice", 1, lambda x: 2 * x, deterministic=True)),
        ("create_function keywords", lambda c: c.create_function(name="f", narg=-1, func=print)),
        ("create_function None removes", lambda c: c.create_function("twice", 1, None)),
        ("create_function name not str", lambda c: c.create_function(1, 1, len)),
        ("create_function narg not int", lambda c: c.create_function("f", "x", len)),
        ("create_function narg -2", lambda c: c.create_function("f", -2, len)),
        ("create_function narg 128", lambda c: c.create_function("f", 128, len)),
        ("create_function narg 2**70", lambda c: c.create_function("f", 2 ** 70, len)),
        ("create_function NUL", lambda c: c.create_function("f\0", 1, len)),
        ("create_aggregate", lambda c: c.create_aggregate("mysum", 1, object)),
        ("create_aggregate keywords", lambda c: c.create_aggregate(name="a", n_arg=1, aggregate_class=object)),
        ("create_aggregate narg -5", lambda c: c.create_aggregate("a", -5, object)),
        ("create_aggregate name not str", lambda c: c.create_aggregate(1, 1, object)),
        ("create_window_function", lambda c: c.create_window_function("w", 1, object)),
        ("create_window_function None", lambda c: c.create_window_function("w", 1, None)),
        ("create_window_function narg -5", lambda c: c.create_window_function("w", -5, object)),
        ("create_window_function name not str", lambda c: c.create_window_function(1, 1, object)),
        ("create_collation", lambda c: c.create_collation("backwards", lambda a, b: 0)),
        ("create_collation None", lambda c: c.create_collation("backwards", None)),
        ("create_collation not callable", lambda c: c.create_collation("c", 5)),
        ("create_collation name not str", lambda c: c.create_collation(1, len)),
    ]:
        db.call(label, fn)
    db.execute("SELECT 1")
    db.close()
    db.call("create_function on a closed connection", lambda c: c.create_function("f", 1, len))
    db.call("create_collation on a closed connection", lambda c: c.create_collation("c", len))


def test_registering_is_accepted_as_sqlite3_accepts_it(tmp_path):
    assert_same(registering_functions_aggregates_windows_and_collations, tmp_path)


@pytest.mark.parametrize("register, sql, message", [
    (lambda db: db.create_function("twice", 1, lambda x: 2 * x), "SELECT twice(2)", "user-defined function twice()"),
    (lambda db: db.create_function("REGEXP", 2, lambda a, b: 1), "SELECT 'abc' REGEXP 'b'", "user-defined function REGEXP()"),
    (lambda db: db.create_aggregate("mysum", 1, object), "SELECT mysum(1)", "user-defined function mysum()"),
    (lambda db: db.create_window_function("mywin", 1, object), "SELECT mywin(1) OVER ()", "user-defined function mywin()"),
    (lambda db: db.create_collation("Backwards", lambda a, b: 0), "SELECT 'a' < 'b' COLLATE backwards", "user-defined collation Backwards"),
])
def test_using_a_registered_function_fails_when_it_runs(tmp_path, register, sql, message):
    for path in (":memory:", str(tmp_path / "db.sqlite")):
        db = sqlite_rpc.connect(path)
        register(db)
        with pytest.raises(sqlite3.NotSupportedError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
            db.execute(sql)
        assert "not supported by sqlite-rpc" in str(info.value)
        db.execute("CREATE TABLE IF NOT EXISTS t(a)")
        with pytest.raises(sqlite3.NotSupportedError):
            db.executescript("INSERT INTO t VALUES (1); " + sql + ";")
        assert db.execute("SELECT 1").fetchone() == (1,)  # the connection goes on
        db.close()
    # A name nobody registered keeps SQLite's own error.
    db = sqlite_rpc.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError, match="no such function: nope"):
        db.execute("SELECT nope(1)")
    db.create_function("twice", 1, lambda x: 2 * x)
    db.create_function("twice", 1, None)  # removed again
    with pytest.raises(sqlite3.OperationalError, match="no such function: twice") as info:
        db.execute("SELECT twice(1)")
    assert not isinstance(info.value, sqlite3.NotSupportedError)


# ---- SQLAlchemy ---------------------------------------------------------------------------

def _sqlalchemy_session(module, path, via):
    sa = pytest.importorskip("sqlalchemy")
    from sqlalchemy import Column, ForeignKey, Integer, String, func, select
    from sqlalchemy.orm import Session, declarative_base, relationship

    Base = declarative_base()

    class User(Base):
        __tablename__ = "users"
        id = Column(Integer, primary_key=True)
        name = Column(String(50), unique=True, nullable=False)
        age = Column(Integer, default=0)
        posts = relationship("Post", back_populates="user", cascade="all, delete-orphan")

    class Post(Base):
        __tablename__ = "posts"
        id = Column(Integer, primary_key=True)
        user_id = Column(Integer, ForeignKey("users.id"))
        title = Column(String(100))
        user = relationship("User", back_populates="posts")

    if via == "creator":
        engine = sa.create_engine("sqlite://", creator=lambda: module.connect(path))
    else:
        engine = sa.create_engine("sqlite:///" + path, module=module)
    out = []
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as s:
            s.add_all([User(name="ann", age=30, posts=[Post(title="p1"), Post(title="p2")]), User(name="bob", age=25)])
            s.commit()
            out.append([(u.id, u.name, u.age, [p.title for p in u.posts]) for u in s.scalars(select(User).order_by(User.id))])
            bob = s.scalars(select(User).where(User.name == "bob")).one()
            bob.age = 26
            s.commit()
            s.add(User(name="bob"))
            try:
                s.commit()
            except sa.exc.IntegrityError as e:
                out.append(["IntegrityError", str(e.orig)])
                s.rollback()
            s.delete(s.get(User, 1))
            s.commit()
            out.append([(u.id, u.name, u.age) for u in s.scalars(select(User).order_by(User.id))])
            out.append([s.scalar(select(func.count()).select_from(Post)), s.scalar(select(func.max(User.age)))])
            raw = s.connection().connection.dbapi_connection
            out.append(type(raw).__module__.split(".")[0])
        # The dialect registered regexp on connect; using it is sqlite3's business only.
        with engine.connect() as c:
            try:
                out.append(["regexp", c.execute(select(User.name).where(User.name.regexp_match("^b"))).scalars().all()])
            except sa.exc.DBAPIError as e:
                out.append(["regexp", type(e.orig).__name__, "regexp" in str(e.orig)])
    finally:
        engine.dispose()
    return out


@pytest.mark.parametrize("via", ["creator", "module"])
def test_sqlalchemy_orm_session(tmp_path, via):
    std = _sqlalchemy_session(sqlite3, str(tmp_path / "std.sqlite"), via)
    rpc = _sqlalchemy_session(sqlite_rpc, str(tmp_path / "rpc.sqlite"), via)
    assert std[-1] == ["regexp", ["bob"]]
    assert rpc[-1] == ["regexp", "NotSupportedError", True]
    assert std[-2] == "sqlite3" and rpc[-2] == "sqlite_rpc"
    assert std[:-2] == rpc[:-2]


# ---- peewee -------------------------------------------------------------------------------

def _peewee_session(module, path):
    peewee = pytest.importorskip("peewee")

    class Database(peewee.SqliteDatabase):
        def _connect(self):
            # peewee's own _connect, with the module passed in (it registers its functions,
            # sets its pragmas and autocommit mode in the hooks).
            conn = module.connect(self.database, timeout=self._timeout, isolation_level=None, **self.connect_params)
            try:
                self._add_conn_hooks(conn)
            except Exception:
                conn.close()
                raise
            return conn

    db = Database(path, pragmas={"journal_mode": "wal", "foreign_keys": 1})
    db.func("twice")(lambda x: 2 * x)  # a user-defined function, registered on connect

    class Base(peewee.Model):
        class Meta:
            database = db

    class Person(Base):
        name = peewee.CharField(unique=True)
        age = peewee.IntegerField(default=0)

    class Pet(Base):
        owner = peewee.ForeignKeyField(Person, backref="pets", on_delete="CASCADE")
        kind = peewee.CharField()

    out = []
    db.connect()
    try:
        db.create_tables([Person, Pet])
        with db.atomic():
            ann = Person.create(name="ann", age=3)
            Pet.create(owner=ann, kind="cat")
            Person.create(name="bob")
        out.append([(p.id, p.name, p.age, [x.kind for x in p.pets]) for p in Person.select().order_by(Person.id)])
        Person.update(age=Person.age + 1).where(Person.name == "bob").execute()
        try:
            with db.atomic():
                Person.create(name="cid")
                Person.create(name="ann")
        except peewee.IntegrityError as e:
            out.append(["IntegrityError", str(e)])
        Person.get(Person.name == "ann").delete_instance(recursive=True)
        out.append([(p.id, p.name, p.age) for p in Person.select().order_by(Person.id)])
        out.append([Pet.select().count(), db.in_transaction()])
        try:
            out.append(["twice", db.execute_sql("SELECT twice(21)").fetchone()])
        except peewee.NotSupportedError as e:
            out.append(["twice", "NotSupportedError", "twice()" in str(e)])
    finally:
        db.close()
    return out


def test_peewee_model_session(tmp_path):
    std = _peewee_session(sqlite3, str(tmp_path / "std.sqlite"))
    rpc = _peewee_session(sqlite_rpc, str(tmp_path / "rpc.sqlite"))
    assert std[-1] == ["twice", (42,)]
    assert rpc[-1] == ["twice", "NotSupportedError", True]
    assert std[:-1] == rpc[:-1]


# ---- Django -------------------------------------------------------------------------------

_DJANGO = r'''
import datetime, decimal, json, os, sys
use_rpc = sys.argv[1] == "sqlite_rpc"
import django
from django.conf import settings
settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[2]}},
                   INSTALLED_APPS=[], USE_TZ=True)
if use_rpc:
    # Django's SQLite backend with sqlite_rpc as its DB-API module (it imports sqlite3's
    # dbapi2 as `Database`; its cursors are a sqlite3.Cursor subclass, made with
    # connection.cursor(factory=...)).
    import sqlite_rpc
    from django.db.backends.sqlite3 import base
    base.Database = sqlite_rpc
    base.DatabaseWrapper.Database = sqlite_rpc
django.setup()
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Count, Max

class Author(models.Model):
    name = models.CharField(max_length=50, unique=True)
    born = models.DateField(null=True)
    class Meta:
        app_label = "demo"

class Book(models.Model):
    author = models.ForeignKey(Author, on_delete=models.CASCADE)
    title = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=6, decimal_places=2)
    added = models.DateTimeField(null=True)
    class Meta:
        app_label = "demo"

with connection.schema_editor() as editor:  # no migrations: the tables from the models
    editor.create_model(Author)
    editor.create_model(Book)
out = []
ann = Author.objects.create(name="ann", born=datetime.date(1980, 5, 1))
Author.objects.create(name="bob")
stamp = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
Book.objects.create(author=ann, title="one", price=decimal.Decimal("9.99"), added=stamp)
Book.objects.create(author=ann, title="two", price=decimal.Decimal("20.00"))
out.append([(a.id, a.name, str(a.born)) for a in Author.objects.order_by("id")])
out.append([(b.title, str(b.price), b.author.name, str(b.added)) for b in Book.objects.select_related("author").order_by("title")])
out.append(list(Book.objects.filter(price__gt=10).values_list("author__name", flat=True)))
Book.objects.filter(title="one").update(price=decimal.Decimal("5.50"))
out.append(str(Book.objects.get(title="one").price))
try:
    with transaction.atomic():
        Author.objects.create(name="cid")
        Author.objects.create(name="ann")
except IntegrityError:
    out.append("IntegrityError")
out.append(Author.objects.count())
out.append(list(Book.objects.values("author__name").annotate(n=Count("id"), m=Max("price")).values_list("author__name", "n")))
Book.objects.filter(author=ann).delete()
ann.delete()
out.append([Author.objects.count(), Book.objects.count()])
try:  # __regex uses the REGEXP function Django registers on connect
    out.append(["regex", list(Author.objects.filter(name__regex=r"^b").values_list("name", flat=True))])
except Exception as e:
    out.append(["regex", type(e).__name__, "user-defined function" in str(e)])
out.append(type(connection.connection).__module__.split(".")[0])
print(json.dumps(out))
'''


def test_django_models_without_migrations(tmp_path):
    pytest.importorskip("django")
    script = tmp_path / "django_script.py"
    script.write_text(_DJANGO)
    results = {}
    for module in ("sqlite3", "sqlite_rpc"):
        proc = subprocess.run([sys.executable, str(script), module, str(tmp_path / (module + ".sqlite"))],
                              capture_output=True, text=True, timeout=120, env=dict(os.environ))
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[module] = json.loads(proc.stdout.strip().splitlines()[-1])
    std, rpc = results["sqlite3"], results["sqlite_rpc"]
    assert std[-1] == "sqlite3" and rpc[-1] == "sqlite_rpc"
    assert std[-2] == ["regex", ["bob"]]
    assert rpc[-2] == ["regex", "NotSupportedError", True]
    assert std[:-2] == rpc[:-2]
