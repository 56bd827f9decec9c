"""The database layer: connections, dialect, migrations, the road network, refreshes.

Two dialects run the same ``sql/NNN_name.sql`` migrations:

``"timescale"``
    the ``timescaledb`` extension is installed (production image, PGlite test tier):
    hypertables, compression/retention policies, real-time continuous aggregates.
``"plain"``
    plain PostgreSQL: the same tables, ordinary views instead of continuous aggregates,
    no policies (retention via ``prune_older_than``). Every view answers the same.

Migration files are split into statements; comment lines switch the dialect of what follows::

    -- @all          both dialects (the default at the top of each file)
    -- @timescale    only where TimescaleDB is installed
    -- @plain        only on plain PostgreSQL
    -- @autocommit   the NEXT statement runs outside a transaction (continuous aggregates);
                     it must be idempotent (IF NOT EXISTS), as a failure after it cannot
                     roll it back

Everything else in a file runs in one transaction together with its ``schema_migrations``
row, so a failed migration leaves nothing behind (except completed ``@autocommit``
statements). Objects are created unqualified, in the first schema of the ``search_path``.

PGlite (the TimescaleDB test tier) serves ONE backend session to every client in turn:
session settings, roles and even an open transaction left by a previous client carry
over, and startup options are ignored. :func:`connect` therefore resets the session and
sets its options with ``SET`` after connecting. Its socket server (pglite-socket 0.0.19)
also hands each TCP read to the engine without framing, so one client message larger than
about 64 KiB crashes it: bulk writes are cut to :func:`message_budget` bytes per statement.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import psycopg
import shapely
from psycopg import sql
from psycopg.pq import TransactionStatus

from pipeline.exceptions import DatabaseError, MigrationError

if TYPE_CHECKING:
    from roadnet import RoadNetwork

__all__ = [
    "AppliedMigration",
    "CONTINUOUS_AGGREGATES",
    "Dialect",
    "Migration",
    "SQL_DIR",
    "Statement",
    "applied_migrations",
    "connect",
    "create_database",
    "dialect",
    "drop_database",
    "ensure_login",
    "is_pglite",
    "load_network",
    "message_budget",
    "migrate",
    "parse_migration",
    "read_migrations",
    "refresh",
    "row_chunks",
    "run_policy_jobs",
]

log = logging.getLogger("roadsense.db")

Dialect = Literal["timescale", "plain"]
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
#: Views that are continuous aggregates on TimescaleDB (ordinary views on plain PostgreSQL).
CONTINUOUS_AGGREGATES = ("segment_vehicle_daily", "segment_event_daily")
READER_ROLE = "roadsense_reader"
#: Bytes of parameters per statement on PGlite (its socket server crashes above ~64 KiB).
PGLITE_MESSAGE_BYTES = 40_000
#: Bytes of parameters per statement elsewhere (PostgreSQL's limit is 1 GiB per message).
DEFAULT_MESSAGE_BYTES = 32_000_000

_FILE_RE = re.compile(r"^(\d{3,})_([a-z0-9][a-z0-9_]*)\.sql$")
_DIRECTIVE_RE = re.compile(r"[ \t]*--[ \t]*@(\w+)\b[^\n]*")
_DOLLAR_TAG_RE = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")
_DIALECT_DIRECTIVES = {"all", "timescale", "plain"}


# --------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------


def connect(
    dsn: str,
    *,
    autocommit: bool = False,
    timeout_s: float = 10.0,
    statement_timeout_s: float | None = 60.0,
    application_name: str = "roadsense",
    search_path: str | None = None,
) -> psycopg.Connection:
    """Open a psycopg 3 connection with a clean, UTC session.

    Parameters
    ----------
    dsn : str
        libpq connection string or URI (PGlite needs ``sslmode=disable`` and a password).
    autocommit : bool, default False
        Autocommit mode of the returned connection.
    timeout_s : float, default 10
        Connection timeout, seconds (libpq rounds up to whole seconds, minimum 2).
    statement_timeout_s : float or None, default 60
        Server-side limit per statement, seconds; ``None`` or 0 means no limit.
    application_name : str, default "roadsense"
        Shown in ``pg_stat_activity``.
    search_path : str, optional
        Set the session's ``search_path`` (e.g. ``"roadsense, public"``); by default it is
        left alone. On PGlite pass it explicitly: the previous client's value carries over
        there, and ``RESET search_path`` yields ``pg_catalog``.

    An open transaction inherited from a previous PGlite client is rolled back and
    ``RESET ROLE`` is run; ``TimeZone`` is set to UTC, so ``timestamptz`` values come back
    as UTC-aware datetimes on every server. (Settings go through ``SET``, not startup
    options, which PGlite ignores.)

    Raises
    ------
    DatabaseError
        If the server is unreachable, refuses the login, or the timeout expires.
    """
    if not timeout_s > 0:
        raise ValueError(f"{timeout_s=} must be > 0")
    if statement_timeout_s is not None and statement_timeout_s < 0:
        raise ValueError(f"{statement_timeout_s=} must be >= 0 or None")
    stmt_ms = 0 if not statement_timeout_s else max(1, round(statement_timeout_s * 1000))
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=max(2, math.ceil(timeout_s)),
            application_name=application_name,
        )
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot connect to {_safe_dsn(dsn)} within {timeout_s:g} s: {exc}",
            sqlstate=getattr(exc, "sqlstate", None),
        ) from exc
    try:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            log.warning("db: the session came with an open transaction (PGlite?); rolled back")
            conn.execute("ROLLBACK")
        conn.execute("RESET ROLE")
        conn.execute(
            "SELECT set_config('TimeZone', 'UTC', false),"
            " set_config('statement_timeout', %s, false),"
            " set_config('application_name', %s, false)",
            (f"{stmt_ms}ms", application_name),
        )
        if search_path is not None:
            conn.execute("SELECT set_config('search_path', %s, false)", (search_path,))
        conn.autocommit = autocommit
    except psycopg.Error as exc:
        conn.close()
        raise DatabaseError(
            f"cannot set up the session on {_safe_dsn(dsn)}: {exc}", sqlstate=exc.sqlstate
        ) from exc
    return conn


def _safe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    dsn = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn)


def dialect(conn: psycopg.Connection) -> Dialect:
    """``"timescale"`` if the ``timescaledb`` extension is installed here, else ``"plain"``."""
    row = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    return "timescale" if row else "plain"


_PGLITE_CACHE: weakref.WeakKeyDictionary[psycopg.Connection, bool] = weakref.WeakKeyDictionary()


def is_pglite(conn: psycopg.Connection) -> bool:
    """True if the server is PGlite (PostgreSQL compiled to WASM by Emscripten); cached."""
    known = _PGLITE_CACHE.get(conn)
    if known is None:
        row = conn.execute("SELECT version()").fetchone()
        known = bool(row and "emscripten" in row[0].lower())
        _PGLITE_CACHE[conn] = known
    return known


def message_budget(conn: psycopg.Connection) -> int:
    """Largest parameter payload per statement, bytes, that this server accepts safely."""
    return PGLITE_MESSAGE_BYTES if is_pglite(conn) else DEFAULT_MESSAGE_BYTES


def row_chunks(
    columns: Sequence[Sequence[object]],
    is_text: Sequence[bool],
    *,
    max_bytes: int,
    max_rows: int | None = None,
) -> list[slice]:
    """Consecutive row slices whose estimated text-format size stays under ``max_bytes``.

    ``columns`` are equal-length columns; ``is_text[k]`` says whether column ``k`` holds
    strings (size ~1.5 bytes per character, for array quoting and escapes) or scalars
    (~28 bytes each). A row larger than ``max_bytes`` gets a slice of its own.
    """
    n = len(columns[0]) if columns else 0
    if n == 0:
        return []
    size = np.zeros(n)
    for col, text in zip(columns, is_text):
        if text:
            size += 1.5 * np.char.str_len(np.asarray(col, dtype=np.str_)) + 4.0
        else:
            size += 28.0
    cum = np.cumsum(size)
    out: list[slice] = []
    start = 0
    while start < n:
        base = cum[start - 1] if start else 0.0
        end = int(np.searchsorted(cum, base + max_bytes, side="right"))
        end = max(end, start + 1)
        if max_rows is not None:
            end = min(end, start + max_rows)
        end = min(end, n)
        out.append(slice(start, end))
        start = end
    return out


@contextmanager
def _autocommit(conn: psycopg.Connection) -> Iterator[None]:
    """Run the block in autocommit mode (needs no open transaction), then restore."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise DatabaseError(
            "this operation needs a connection without an open transaction; "
            "commit or roll back first"
        )
    saved = conn.autocommit
    conn.autocommit = True
    try:
        yield
    finally:
        if conn.info.transaction_status == TransactionStatus.IDLE and not conn.closed:
            conn.autocommit = saved


@contextmanager
def _no_statement_timeout(conn: psycopg.Connection) -> Iterator[None]:
    """Lift ``statement_timeout`` for long maintenance work (autocommit connection)."""
    old = conn.execute("SELECT current_setting('statement_timeout')").fetchone()
    conn.execute("SELECT set_config('statement_timeout', '0', false)")
    try:
        yield
    finally:
        if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (old[0],))


# --------------------------------------------------------------------------------------
# Migration files
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """One SQL statement of a migration file.

    ``dialect`` is ``"all"``, ``"timescale"`` or ``"plain"``; ``line`` is 1-based.
    """

    sql: str
    dialect: Literal["all", "timescale", "plain"]
    autocommit: bool
    line: int


@dataclass(frozen=True)
class Migration:
    """A migration file: ``version`` from its ``NNN_`` prefix, sha256 ``checksum`` of its bytes."""

    version: int
    name: str
    path: Path
    checksum: str

    @property
    def filename(self) -> str:
        return self.path.name

    def statements(self) -> list[Statement]:
        return parse_migration(self.path.read_text(encoding="utf-8"), source=self.filename)


@dataclass(frozen=True)
class AppliedMigration:
    """A row of ``schema_migrations``; ``duration_s`` is the wall time it took, seconds."""

    version: int
    name: str
    checksum: str
    dialect: Dialect
    duration_s: float


def read_migrations(directory: Path | str | None = None) -> list[Migration]:
    """The migration files of ``directory`` (default ``sql/``) in version order.

    Only files named ``NNN_name.sql`` (three or more digits) count; others are ignored.

    Raises
    ------
    MigrationError
        If the directory is missing or two files share a version number.
    """
    directory = Path(directory) if directory is not None else SQL_DIR
    if not directory.is_dir():
        raise MigrationError(f"migrations directory not found: {directory}")
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        m = _FILE_RE.match(path.name)
        if not m:
            continue
        version = int(m.group(1))
        if version in found:
            raise MigrationError(
                f"two migrations with version {version}: {found[version].filename}, {path.name}"
            )
        found[version] = Migration(
            version=version,
            name=m.group(2),
            path=path,
            checksum=hashlib.sha256(path.read_bytes()).hexdigest(),
        )
    return [found[v] for v in sorted(found)]


def parse_migration(text: str, *, source: str = "<sql>") -> list[Statement]:
    """Split a migration into statements, honouring the ``-- @...`` section directives.

    Understands single-quoted strings (``''`` and ``E'\\''`` escapes), quoted identifiers,
    dollar quoting (``$$``, ``$tag$``), ``--`` and nested ``/* */`` comments. A statement
    ends at a top-level ``;`` (or at the end of the file).

    Raises
    ------
    MigrationError
        On an unknown directive, a directive inside a statement, an unterminated quote or
        comment, or an ``@autocommit`` not followed by a statement.
    """
    out: list[Statement] = []
    current: Literal["all", "timescale", "plain"] = "all"
    autocommit_next = False
    n = len(text)
    i = 0
    code_at: int | None = None  # position of its first non-comment character

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def fail(pos: int, what: str) -> MigrationError:
        return MigrationError(f"{source}:{line_of(pos)}: {what}")

    while i < n:
        c = text[i]
        if i == 0 or text[i - 1] == "\n":
            m = _DIRECTIVE_RE.match(text, i)
            if m:
                word = m.group(1)
                if code_at is not None:
                    raise fail(i, f"directive @{word} inside a statement (missing ';'?)")
                if word in _DIALECT_DIRECTIVES:
                    current = word  # type: ignore[assignment]
                elif word == "autocommit":
                    autocommit_next = True
                else:
                    raise fail(
                        i, f"unknown directive @{word} (use @all, @timescale, @plain, @autocommit)"
                    )
                i = m.end()
                continue
        if c == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == "/" and text.startswith("/*", i):
            depth, j = 1, i + 2
            while depth and j < n:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise fail(i, "unterminated /* comment")
            i = j
            continue
        if code_at is None and not c.isspace() and c != ";":
            code_at = i
        if c == "'":
            prev2 = text[i - 2] if i >= 2 else " "
            escape = i > 0 and text[i - 1] in "eE" and not (prev2.isalnum() or prev2 == "_")
            j = i + 1
            while True:
                if j >= n:
                    raise fail(i, "unterminated string")
                if escape and text[j] == "\\":
                    j += 2
                    continue
                if text[j] == "'":
                    if text.startswith("''", j):
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
            continue
        if c == '"':
            j = text.find('"', i + 1)
            while j >= 0 and text.startswith('""', j):
                j = text.find('"', j + 2)
            if j < 0:
                raise fail(i, 'unterminated quoted identifier')
            i = j + 1
            continue
        if c == "$":
            m = _DOLLAR_TAG_RE.match(text, i)
            if m and not (i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")):
                tag = m.group(0)
                j = text.find(tag, m.end())
                if j < 0:
                    raise fail(i, f"unterminated dollar quote {tag}")
                i = j + len(tag)
                continue
        if c == ";":
            if code_at is not None:
                out.append(
                    Statement(text[code_at:i].strip(), current, autocommit_next, line_of(code_at))
                )
                autocommit_next = False
            code_at = None
        i += 1
    if code_at is not None and text[code_at:].strip():
        out.append(Statement(text[code_at:].strip(), current, autocommit_next, line_of(code_at)))
        autocommit_next = False
    if autocommit_next:
        raise MigrationError(f"{source}: @autocommit at the end of the file, no statement after it")
    return out


# --------------------------------------------------------------------------------------
# Migrating
# --------------------------------------------------------------------------------------

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    dialect     text NOT NULL CHECK (dialect IN ('timescale', 'plain')),
    applied_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms double precision NOT NULL
)
"""


def applied_migrations(conn: psycopg.Connection) -> list[AppliedMigration]:
    """Rows of ``schema_migrations`` in version order ([] if the table does not exist)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute(
        "SELECT version, name, checksum, dialect, duration_ms"
        " FROM schema_migrations ORDER BY version"
    ).fetchall()
    return [AppliedMigration(v, n, c, d, ms / 1000.0) for v, n, c, d, ms in rows]


def migrate(
    conn: psycopg.Connection,
    *,
    directory: Path | str | None = None,
    dialect_override: Dialect | None = None,
) -> list[AppliedMigration]:
    """Apply the migrations not yet applied; return those applied now (in order).

    Idempotent: a second call applies nothing and returns ``[]``. Before applying anything
    it checks that every applied migration still has its file with the same checksum, that
    no new file sorts before an applied one, and that the dialect has not changed. Holds a
    session advisory lock, so concurrent callers apply each migration once.

    Parameters
    ----------
    conn : psycopg.Connection
        Without an open transaction; its autocommit mode is restored afterwards.
    directory : path, optional
        Migrations directory (default ``sql/`` of the repository).
    dialect_override : "timescale" or "plain", optional
        Force a dialect (default: :func:`dialect`). ``"plain"`` works on a TimescaleDB
        server too; ``"timescale"`` needs the extension to be creatable.

    Raises
    ------
    MigrationError
        If a file changed or disappeared after being applied, the dialect differs from the
        one recorded, or a statement fails (the message names file, line and the error).
    """
    migrations = read_migrations(directory)
    with _autocommit(conn), _no_statement_timeout(conn):
        target: Dialect = dialect_override or dialect(conn)
        lock_key = conn.execute(
            "SELECT hashtext('roadsense.migrate:' || current_schema())"
        ).fetchone()[0]
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key,))
        try:
            conn.execute(_BOOTSTRAP)
            applied = {a.version: a for a in applied_migrations(conn)}
            _check_applied(applied, migrations, target)
            done: list[AppliedMigration] = []
            for mig in migrations:
                if mig.version not in applied:
                    done.append(_apply(conn, mig, target))
            return done
        finally:
            if not conn.closed:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")
                conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))


def _check_applied(
    applied: dict[int, AppliedMigration], migrations: Sequence[Migration], target: Dialect
) -> None:
    files = {m.version: m for m in migrations}
    problems: list[str] = []
    for v, a in sorted(applied.items()):
        f = files.get(v)
        if f is None:
            problems.append(f"migration {v:03d}_{a.name} is applied but its file is missing")
        elif f.checksum != a.checksum:
            problems.append(
                f"{f.filename} changed after it was applied (checksum {a.checksum[:12]}… in the "
                f"database, {f.checksum[:12]}… on disk); add a new migration instead of "
                "editing it"
            )
        if a.dialect != target:
            problems.append(
                f"migration {v:03d} was applied for dialect {a.dialect!r}, now {target!r}"
            )
    if applied:
        last = max(applied)
        late = [m.filename for m in migrations if m.version < last and m.version not in applied]
        if late:
            problems.append(
                f"new migrations {late} sort before the last applied one ({last:03d}); "
                "renumber them"
            )
    if problems:
        raise MigrationError("refusing to migrate: " + "; ".join(problems))


def _apply(conn: psycopg.Connection, mig: Migration, target: Dialect) -> AppliedMigration:
    stmts = [s for s in mig.statements() if s.dialect in ("all", target)]
    t0 = time.perf_counter()
    # Consecutive transactional statements form one group; each @autocommit one is alone.
    groups: list[list[Statement]] = []
    for s in stmts:
        if s.autocommit or not groups or groups[-1][0].autocommit:
            groups.append([s])
        else:
            groups[-1].append(s)
    if not groups or groups[-1][0].autocommit:
        groups.append([])  # the bookkeeping row gets its own transaction
    for k, group in enumerate(groups):
        last = k == len(groups) - 1
        if group and group[0].autocommit:
            _run(conn, mig, group[0])
            continue
        with conn.transaction():
            for s in group:
                _run(conn, mig, s)
            if last:
                duration_ms = (time.perf_counter() - t0) * 1000.0
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, dialect, duration_ms)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (mig.version, mig.name, mig.checksum, target, duration_ms),
                )
    duration_s = time.perf_counter() - t0
    log.info("db: applied %s (%s) in %.2f s", mig.filename, target, duration_s)
    return AppliedMigration(mig.version, mig.name, mig.checksum, target, duration_s)


def _run(conn: psycopg.Connection, mig: Migration, stmt: Statement) -> None:
    try:
        conn.execute(stmt.sql.encode())  # bytes: no client-side '%' placeholder parsing
    except psycopg.Error as exc:
        first = stmt.sql.splitlines()[0][:80]
        partial = (
            " (earlier @autocommit statements of this file stay applied; they are idempotent)"
            if any(s.autocommit for s in mig.statements())
            else ""
        )
        raise MigrationError(
            f"{mig.filename}:{stmt.line}: {exc.sqlstate or ''} {str(exc).strip()} "
            f"-- in: {first}{partial}",
            sqlstate=exc.sqlstate,
        ) from exc


# --------------------------------------------------------------------------------------
# The road network
# --------------------------------------------------------------------------------------

_SEGMENT_COLUMNS = (
    ("segment_id", "text"),
    ("network", "text"),
    ("osm_way_id", "bigint"),
    ("highway", "text"),
    ("ref", "text"),
    ("lanes", "real"),
    ("maxspeed_kmh", "real"),
    ("length_m", "double precision"),
    ("from_node", "text"),
    ("to_node", "text"),
    ("mid_lon", "double precision"),
    ("mid_lat", "double precision"),
    ("geojson", "text"),
)


def _segment_upsert_sql() -> sql.Composed:
    cols = [sql.Identifier(c) for c, _ in _SEGMENT_COLUMNS]
    arrays = sql.SQL(", ").join(
        sql.SQL("%s::{}[]").format(sql.SQL(t)) for _, t in _SEGMENT_COLUMNS
    )
    select = sql.SQL(", ").join(
        sql.SQL("nullif(t.{}, -1)").format(c) if name == "osm_way_id" else sql.SQL("t.{}").format(c)
        for c, (name, _) in zip(cols, _SEGMENT_COLUMNS)
    )
    updates = [c for c in cols if c.as_string() != '"segment_id"']
    return sql.SQL(
        "INSERT INTO segments ({cols}) SELECT {select} FROM unnest({arrays}) AS t({cols}) "
        "ON CONFLICT (segment_id) DO UPDATE SET ({upd}) = ({exc}) "
        "WHERE ({cur}) IS DISTINCT FROM ({exc})"
    ).format(
        cols=sql.SQL(", ").join(cols),
        select=select,
        arrays=arrays,
        upd=sql.SQL(", ").join(updates),
        exc=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(c) for c in updates),
        cur=sql.SQL(", ").join(sql.SQL("segments.{}").format(c) for c in updates),
    )


def load_network(conn: psycopg.Connection, net: RoadNetwork, *, batch_size: int = 2000) -> int:
    """Upsert a road network into ``networks`` and ``segments``; return its segment count.

    One transaction: the ``networks`` row (name, attribution, ``loaded_at``), then the
    segments in batches of at most ``batch_size`` rows (and :func:`message_budget` bytes)
    as one ``INSERT … SELECT FROM unnest(…)`` each (no COPY: PGlite crashes on it),
    unchanged rows untouched; segments of this
    network that are no longer in ``net`` are deleted. ``mid_lon``/``mid_lat`` (degrees)
    are the point at half the segment's length; ``geojson`` is its WGS84 LineString.

    Raises
    ------
    DatabaseError
        If the database refuses the rows (e.g. a segment id already loaded from another
        network is simply re-assigned to this one; other conflicts raise).
    """
    if batch_size < 1:
        raise ValueError(f"{batch_size=} must be >= 1")
    n = len(net)
    idx = np.arange(n)
    lon, lat = net.point_at_wgs84(idx, net.length_m / 2.0)
    columns = [
        net.segment_id.astype(str).tolist(),
        [net.name] * n,
        np.asarray(net.osm_way_id, np.int64).tolist(),
        net.highway.astype(str).tolist(),
        net.ref.tolist(),
        np.asarray(net.lanes, float).tolist(),
        np.asarray(net.maxspeed_kmh, float).tolist(),
        np.asarray(net.length_m, float).tolist(),
        net.node_id[net.from_node].astype(str).tolist(),
        net.node_id[net.to_node].astype(str).tolist(),
        np.asarray(lon, float).tolist(),
        np.asarray(lat, float).tolist(),
        shapely.to_geojson(net.geom_wgs84).tolist(),
    ]
    upsert = _segment_upsert_sql()
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO networks (name, attribution, n_segments, loaded_at)"
                " VALUES (%s, %s, %s, now())"
                " ON CONFLICT (name) DO UPDATE SET attribution = EXCLUDED.attribution,"
                " n_segments = EXCLUDED.n_segments, loaded_at = EXCLUDED.loaded_at",
                (net.name, net.attribution, n),
            )
            is_text = [t == "text" for _, t in _SEGMENT_COLUMNS]
            chunks = row_chunks(
                columns, is_text, max_bytes=message_budget(conn), max_rows=batch_size
            )
            with conn.cursor() as cur:
                for part in chunks:
                    cur.execute(upsert, [col[part] for col in columns])
                existing = cur.execute(
                    "SELECT segment_id FROM segments WHERE network = %s", (net.name,)
                ).fetchall()
                stale = np.setdiff1d(
                    np.asarray([r[0] for r in existing], dtype=np.str_),
                    np.asarray(columns[0], dtype=np.str_),
                ).tolist()
                for part in row_chunks([stale], [True], max_bytes=message_budget(conn)):
                    cur.execute(
                        "DELETE FROM segments WHERE network = %s AND segment_id = ANY(%s::text[])",
                        (net.name, stale[part]),
                    )
    except psycopg.Error as exc:
        raise DatabaseError(
            f"loading network {net.name!r} ({n} segments) failed: {exc}", sqlstate=exc.sqlstate
        ) from exc
    return n


# --------------------------------------------------------------------------------------
# Maintenance
# --------------------------------------------------------------------------------------


def refresh(conn: psycopg.Connection) -> list[str]:
    """Bring the continuous aggregates up to date over all history; return their names.

    TimescaleDB: ``CALL refresh_continuous_aggregate(name, NULL, NULL)`` for each of
    :data:`CONTINUOUS_AGGREGATES` (only invalidated buckets are recomputed). Needed after
    a backfill older than the materialisation watermark or after ``prune_older_than``;
    real-time aggregation covers everything newer. Plain PostgreSQL: nothing to do
    (ordinary views), returns ``[]``. Needs a connection without an open transaction.
    """
    with _autocommit(conn):
        if dialect(conn) != "timescale":
            return []
    with _autocommit(conn), _no_statement_timeout(conn):
        for name in CONTINUOUS_AGGREGATES:
            try:
                conn.execute(
                    sql.SQL("CALL refresh_continuous_aggregate({}, NULL, NULL)").format(
                        sql.Literal(name)
                    )
                )
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"refreshing {name} failed: {exc}", sqlstate=exc.sqlstate
                ) from exc
    return list(CONTINUOUS_AGGREGATES)


def run_policy_jobs(
    conn: psycopg.Connection,
    kinds: Sequence[str] = ("policy_refresh_continuous_aggregate", "policy_compression"),
) -> list[int]:
    """Run now the TimescaleDB policy jobs of this schema's objects; return their job ids.

    For servers without background workers (PGlite) and for tests. ``kinds`` are
    ``proc_name`` values of ``timescaledb_information.jobs`` (add ``"policy_retention"``
    to drop old chunks). Plain PostgreSQL: returns ``[]``.
    """
    with _autocommit(conn):
        if dialect(conn) != "timescale":
            return []
    with _autocommit(conn), _no_statement_timeout(conn):
        rows = conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs"
            " WHERE hypertable_schema = current_schema() AND proc_name = ANY(%s)"
            " ORDER BY array_position(%s, proc_name::text), job_id",
            (list(kinds), list(kinds)),
        ).fetchall()
        ids = [r[0] for r in rows]
        for job in ids:
            try:
                conn.execute("CALL run_job(%s)", (job,))
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"policy job {job} failed: {exc}", sqlstate=exc.sqlstate
                ) from exc
    return ids


def ensure_login(conn: psycopg.Connection, user: str, password: str) -> None:
    """Create (or update the password of) a LOGIN role that is a member of ``roadsense_reader``.

    For dashboards and the HTTP API (e.g. ``roadsense_grafana``). Needs CREATEROLE.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", user):
        raise ValueError(f"{user=} is not a plain lower-case role name")
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    try:
        with conn.transaction():
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                    sql.SQL(verb), sql.Identifier(user), sql.Literal(password)
                )
            )
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(READER_ROLE), sql.Identifier(user))
            )
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot set up login {user!r}: {exc}", sqlstate=exc.sqlstate) from exc


def create_database(admin_dsn: str, prefix: str, *, net: RoadNetwork | None = None) -> str:
    """A new, migrated database beside ``admin_dsn``'s, named ``prefix`` and a random
    suffix; returns its DSN. With ``net``, the road network is loaded too.

    For tests and benchmarks that need a database of their own; :func:`drop_database`
    removes it. Needs CREATEDB on ``admin_dsn``'s role.
    """
    import uuid

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    with connect(dsn, autocommit=True) as conn:
        migrate(conn)
        if net is not None:
            load_network(conn, net)
    return dsn


def drop_database(admin_dsn: str, dsn: str) -> None:
    """Drop the database of ``dsn`` (made by :func:`create_database`), closing its sessions."""
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
