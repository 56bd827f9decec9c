"""The database sink: idempotent, set-based writes of segment passes and harsh events.

Contract (STYLE.md §3): :class:`PassSink` buffers with :meth:`PassSink.add` and writes at
checkpoint with :meth:`PassSink.flush`; the stream commits Kafka offsets only after
``flush`` returned. Writes are keyed on the natural keys of ``schemas/records.py``::

    segment_passes  (vehicle, segment_id, entry_time)
    harsh_events    (vehicle, start_time, type)

Each table gets ``INSERT … SELECT … FROM unnest(%s::text[], %s::timestamptz[], …)
ON CONFLICT (key) DO NOTHING`` — one statement per batch (cut in byte-bounded chunks on
PGlite), the batch deduplicated on the key in SQL first (first occurrence wins), so a
replay after a crash inserts nothing and the returned counts are rows actually inserted.
Both tables are written in ONE transaction: either all of a batch is stored or none.

Columns may come as pydantic records (:func:`write_results`) or as column arrays
(:func:`write_columns`: lists or NumPy arrays, times as aware datetimes or UTC
``datetime64``; NaN in a nullable float column is stored as NULL).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from pipeline.db import message_budget, row_chunks
from pipeline.exceptions import SinkError
from schemas._errors import SchemaError
from schemas.records import RECORD_SCHEMA_VERSION, HarshEvent, SegmentPass

__all__ = [
    "EVENT_TABLE",
    "PASS_TABLE",
    "PassSink",
    "TableSpec",
    "write_columns",
    "write_results",
]


@dataclass(frozen=True)
class Column:
    """A column of a sink table: PostgreSQL type, and how missing values are handled."""

    name: str
    pgtype: str  # element type of the parameter array
    nullable: bool = False
    default: Any = None  # used when the column is absent from a column mapping

    @property
    def is_text(self) -> bool:
        return self.pgtype == "text"

    @property
    def is_time(self) -> bool:
        return self.pgtype == "timestamptz"

    @property
    def is_float(self) -> bool:
        return self.pgtype == "float8"


@dataclass(frozen=True)
class TableSpec:
    """Table name, its columns (in record-field order) and its natural key."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def insert_sql(self) -> sql.Composed:
        """``INSERT … SELECT DISTINCT ON (key) … FROM unnest(arrays) … ON CONFLICT``.

        Takes one array parameter per column, in :attr:`columns` order.
        """
        ident = {c.name: sql.Identifier(c.name) for c in self.columns}
        cols = sql.SQL(", ").join(ident[c.name] for c in self.columns)
        key = sql.SQL(", ").join(sql.SQL("t.{}").format(ident[k]) for k in self.key)
        arrays = sql.SQL(", ").join(
            sql.SQL("%s::{}[]").format(sql.SQL(c.pgtype)) for c in self.columns
        )
        # NaN in a nullable float column means "no value" (NumPy input): store NULL.
        select = sql.SQL(", ").join(
            sql.SQL("nullif(t.{0}, 'NaN'::float8) AS {0}").format(ident[c.name])
            if c.is_float and c.nullable
            else sql.SQL("t.{}").format(ident[c.name])
            for c in self.columns
        )
        return sql.SQL(
            "INSERT INTO {table} ({cols}) "
            "SELECT {cols} FROM ("
            "SELECT DISTINCT ON ({key}) {select} "
            "FROM unnest({arrays}) WITH ORDINALITY AS t({cols}, _ord) "
            "ORDER BY {key}, t._ord) AS batch "
            "ON CONFLICT ({keycols}) DO NOTHING"
        ).format(
            table=sql.Identifier(self.name),
            cols=cols,
            key=key,
            select=select,
            arrays=arrays,
            keycols=sql.SQL(", ").join(ident[k] for k in self.key),
        )


PASS_TABLE = TableSpec(
    name="segment_passes",
    columns=(
        Column("vehicle", "text"),
        Column("segment_id", "text"),
        Column("entry_time", "timestamptz"),
        Column("exit_time", "timestamptz"),
        Column("entry_offset_m", "float8"),
        Column("exit_offset_m", "float8"),
        Column("covered_m", "float8"),
        Column("mean_speed_kmh", "float8"),
        Column("n_samples", "int4"),
        Column("fs_hz", "float8"),
        Column("iri_m_per_km", "float8", nullable=True),
        Column("roughness_rms_mps2", "float8", nullable=True),
        Column("max_vertical_mps2", "float8"),
        Column("n_harsh_events", "int4"),
        Column("confidence", "float8"),
        Column("powertrain", "text", nullable=True),
        Column("model_year", "int2", nullable=True),
        Column("schema_version", "int2", default=RECORD_SCHEMA_VERSION),
    ),
    key=("vehicle", "segment_id", "entry_time"),
)

EVENT_TABLE = TableSpec(
    name="harsh_events",
    columns=(
        Column("vehicle", "text"),
        Column("type", "text"),
        Column("start_time", "timestamptz"),
        Column("duration_s", "float8"),
        Column("peak_mps2", "float8"),
        Column("speed_kmh", "float8"),
        Column("segment_id", "text"),
        Column("offset_m", "float8"),
        Column("lat_deg", "float8"),
        Column("lon_deg", "float8"),
        Column("schema_version", "int2", default=RECORD_SCHEMA_VERSION),
    ),
    key=("vehicle", "start_time", "type"),
)

# Composed once; psycopg renders them per connection.
_INSERT_SQL = {PASS_TABLE.name: PASS_TABLE.insert_sql(), EVENT_TABLE.name: EVENT_TABLE.insert_sql()}


def _records_to_columns(spec: TableSpec, records: Sequence[Any]) -> list[list[Any]]:
    """Transpose records into one list per column (``model_dump`` free, attribute reads)."""
    if not records:
        return [[] for _ in spec.columns]
    names = spec.names
    return [list(col) for col in zip(*(tuple(getattr(r, n) for n in names) for r in records))]


def _as_param(col: Column, values: Any, n: int) -> list[Any]:
    """One column as a Python list psycopg can send as an array (vectorised for NumPy)."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1 or len(values) != n:
            raise SchemaError(f"column {col.name!r}: expected shape ({n},), got {values.shape}")
        if values.dtype.kind == "M":
            if not col.is_time:
                raise SchemaError(f"column {col.name!r} is {col.pgtype}, got datetime64 values")
            text = np.datetime_as_string(values.astype("datetime64[us]"), unit="us", timezone="UTC")
            out = text.astype(object)
            out[np.isnat(values)] = None
            return out.tolist()
        if values.dtype.kind == "f":
            bad = ~np.isfinite(values)
            if bad.any() and not (col.nullable and np.isnan(values[bad]).all()):
                raise SchemaError(
                    f"column {col.name!r} has {int(bad.sum())} non-finite values"
                    + (" (only NaN = missing is allowed)" if col.nullable else "")
                )
            if col.pgtype in ("int2", "int4", "int8"):
                obj = values.astype(object)
                obj[bad] = None
                return obj.tolist()
        return values.tolist()
    out_list = list(values)
    if len(out_list) != n:
        raise SchemaError(f"column {col.name!r}: expected {n} values, got {len(out_list)}")
    return out_list


def _normalise(spec: TableSpec, columns: Mapping[str, Any]) -> tuple[list[list[Any]], int]:
    unknown = set(columns) - set(spec.names)
    if unknown:
        raise SchemaError(f"{spec.name}: unknown columns {sorted(unknown)}")
    required = [c.name for c in spec.columns if not c.nullable and c.default is None]
    missing = [name for name in required if name not in columns]
    if missing:
        raise SchemaError(f"{spec.name}: missing columns {missing}")
    n = len(columns[spec.columns[0].name])
    out = []
    for c in spec.columns:
        if c.name in columns:
            out.append(_as_param(c, columns[c.name], n))
        else:
            out.append([c.default] * n)
    return out, n


def _insert(cur: psycopg.Cursor, spec: TableSpec, cols: list[list[Any]], budget: int) -> int:
    inserted = 0
    for part in row_chunks(cols, [c.is_text for c in spec.columns], max_bytes=budget):
        cur.execute(_INSERT_SQL[spec.name], [col[part] for col in cols])
        inserted += max(cur.rowcount, 0)
    return inserted


def _write(
    conn: psycopg.Connection, passes: list[list[Any]], n_passes: int,
    events: list[list[Any]], n_events: int,
) -> tuple[int, int]:
    if n_passes == 0 and n_events == 0:
        return 0, 0
    try:
        with conn.transaction(), conn.cursor() as cur:
            budget = message_budget(conn)
            p = _insert(cur, PASS_TABLE, passes, budget) if n_passes else 0
            e = _insert(cur, EVENT_TABLE, events, budget) if n_events else 0
    except psycopg.Error as exc:
        diag = getattr(exc, "diag", None)
        detail = getattr(diag, "message_detail", None) if diag is not None else None
        raise SinkError(
            f"batch of {n_passes} passes and {n_events} harsh events not written "
            f"(rolled back): {type(exc).__name__}: {str(exc).strip()}"
            + (f" ({detail})" if detail else ""),
            sqlstate=exc.sqlstate,
            retriable=isinstance(exc, psycopg.OperationalError),
        ) from exc
    return p, e


def write_results(
    conn: psycopg.Connection,
    passes: Sequence[SegmentPass],
    events: Sequence[HarshEvent] = (),
) -> tuple[int, int]:
    """Store passes and harsh events in one transaction; return rows actually inserted.

    Rows whose natural key is already stored (a replay), or repeated within the batch,
    are skipped, so ``(0, 0)`` means everything was there already. If the caller has a
    transaction open, the writes join it (as a savepoint) and the caller commits;
    otherwise they are committed before this returns.

    Raises
    ------
    SinkError
        If the database refused the batch; nothing of it was written. ``retriable`` is
        true for connection failures.
    """
    return _write(
        conn,
        _records_to_columns(PASS_TABLE, passes), len(passes),
        _records_to_columns(EVENT_TABLE, events), len(events),
    )


def write_columns(
    conn: psycopg.Connection,
    passes: Mapping[str, Any] | None = None,
    events: Mapping[str, Any] | None = None,
) -> tuple[int, int]:
    """Like :func:`write_results`, from column arrays keyed by field name.

    Each mapping has one equal-length column per field of :class:`SegmentPass` /
    :class:`HarshEvent` (``schema_version`` and nullable fields may be omitted). Values are
    lists or 1-D NumPy arrays; times are aware datetimes or ``datetime64`` read as UTC;
    NaN in a nullable float column (``iri_m_per_km``, ``roughness_rms_mps2``) means NULL.

    Raises
    ------
    SchemaError
        If a column is missing, unknown, of the wrong length, or has non-finite values.
    SinkError
        If the database refused the batch (nothing of it was written).
    """
    p_cols, n_p = _normalise(PASS_TABLE, passes) if passes else ([], 0)
    e_cols, n_e = _normalise(EVENT_TABLE, events) if events else ([], 0)
    return _write(conn, p_cols, n_p, e_cols, n_e)


class PassSink:
    """Buffer results between checkpoints and write them in one transaction.

    ``add`` keeps records in memory (cheap, no I/O); ``flush`` writes everything added
    since the last successful flush and returns the rows inserted. On :class:`SinkError`
    the buffer is kept, so the caller can retry (or stop) without losing anything, and
    must not commit its Kafka offsets.
    """

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self._passes: list[SegmentPass] = []
        self._events: list[HarshEvent] = []

    def add(self, passes: Sequence[SegmentPass] = (), events: Sequence[HarshEvent] = ()) -> None:
        """Buffer records until the next :meth:`flush`."""
        self._passes.extend(passes)
        self._events.extend(events)

    @property
    def pending(self) -> tuple[int, int]:
        """(passes, events) buffered and not yet written."""
        return len(self._passes), len(self._events)

    def flush(self) -> tuple[int, int]:
        """Write the buffer in one transaction; return (passes, events) actually inserted."""
        result = write_results(self._conn, self._passes, self._events)
        self._passes.clear()
        self._events.clear()
        return result
