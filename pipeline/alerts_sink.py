"""The road-alerts sink: idempotent upsert of stage 2's alerts into ``road_alerts``.

Keyed on ``alert_id`` (deterministic, :func:`pipeline.stage2.alert_id_of`). One statement
per batch::

    INSERT INTO road_alerts (...) SELECT ... FROM (
        SELECT DISTINCT ON (alert_id) ... FROM unnest(%s::text[], ...) ... ORDER BY alert_id, revision DESC)
    ON CONFLICT (alert_id) DO UPDATE SET ... WHERE road_alerts.revision < EXCLUDED.revision

so within a batch the highest revision of an alert wins, a replayed (or older) revision
changes nothing, and the count returned is the rows actually inserted or updated. Like
:mod:`pipeline.sink`, the caller commits its Kafka offsets only after this returned.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import psycopg
from psycopg import sql

from pipeline.exceptions import SinkError
from schemas.records import RoadAlert

__all__ = ["ALERT_TABLE", "write_alerts"]

ALERT_TABLE = "road_alerts"
# (column, element type of the parameter array)
_COLUMNS = (
    ("alert_id", "text"),
    ("segment_id", "text"),
    ("kind", "text"),
    ("position_m", "float8"),
    ("confidence", "float8"),
    ("first_seen", "timestamptz"),
    ("last_seen", "timestamptz"),
    ("n_vehicles", "int4"),
    ("payload", "jsonb"),
    ("lat_deg", "float8"),
    ("lon_deg", "float8"),
    ("n_impacts", "int4"),
    ("revision", "int4"),
)


def _upsert_sql() -> sql.Composed:
    ident = {c: sql.Identifier(c) for c, _ in _COLUMNS}
    cols = sql.SQL(", ").join(ident[c] for c, _ in _COLUMNS)
    arrays = sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(t)) for _, t in _COLUMNS)
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(ident[c]) for c, _ in _COLUMNS if c != "alert_id"
    )
    return sql.SQL(
        "INSERT INTO {table} ({cols}) SELECT {cols} FROM ("
        "SELECT DISTINCT ON (t.alert_id) {tcols} "
        "FROM unnest({arrays}) AS t({cols}) ORDER BY t.alert_id, t.revision DESC) AS batch "
        "ON CONFLICT (alert_id) DO UPDATE SET {updates} "
        "WHERE {table}.revision < EXCLUDED.revision"
    ).format(
        table=sql.Identifier(ALERT_TABLE),
        cols=cols,
        tcols=sql.SQL(", ").join(sql.SQL("t.{}").format(ident[c]) for c, _ in _COLUMNS),
        arrays=arrays,
        updates=updates,
    )


_UPSERT = _upsert_sql()


def write_alerts(conn: psycopg.Connection, alerts: Sequence[RoadAlert]) -> int:
    """Upsert alerts into ``road_alerts`` in one transaction; return rows inserted or updated.

    An alert already stored with the same or a higher ``revision`` is left as it is, so
    replaying a batch returns 0. If the caller has a transaction open, the write joins it.

    Raises
    ------
    SinkError
        If the database refused the batch (nothing of it was written); ``retriable`` for
        connection failures.
    """
    if not alerts:
        return 0
    cols: list[list[object]] = [[] for _ in _COLUMNS]
    for a in alerts:
        row = (
            a.alert_id, a.segment_id, a.kind, a.position_m, a.confidence, a.first_seen, a.last_seen,
            a.n_vehicles, orjson.dumps(a.model_dump(mode="json")).decode(), a.lat_deg, a.lon_deg,
            a.n_impacts, a.revision,
        )  # fmt: skip
        for col, v in zip(cols, row):
            col.append(v)
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(_UPSERT, cols)
            return max(cur.rowcount, 0)
    except psycopg.Error as exc:
        raise SinkError(
            f"batch of {len(alerts)} road alerts not written (rolled back): {type(exc).__name__}: {str(exc).strip()}",
            sqlstate=exc.sqlstate,
            retriable=isinstance(exc, psycopg.OperationalError),
        ) from exc
