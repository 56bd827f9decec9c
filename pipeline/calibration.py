"""The fleet calibration job (``roadsense calibrate``): per-vehicle roughness gains in the database.

Reads the per-(vehicle, segment) mean IRIs of the last ``days`` UTC days of data (from
``segment_vehicle_daily``, the window ending at the newest day stored, so replayed history
calibrates too) and the reference segments, runs :func:`agents.scores.calibrate` (the same
computation ``roadsense score`` runs offline) and replaces ``vehicle_gains`` with one new
``calibration_runs`` row, in one transaction. ``segment_scores`` then reads calibrated IRIs
(sql/009). Run it periodically (e.g. nightly): a new vehicle uses the fleet's default gain
until it has driven enough segments that others drive too.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import psycopg

from agents.scores import MIN_REFERENCES, Calibration, calibrate
from pipeline.db import message_budget, row_chunks
from pipeline.exceptions import DatabaseError

__all__ = ["CalibrationRun", "load_reference_csv", "read_references", "run_calibration", "write_references"]

#: Days of data the job reads by default (a vehicle's gain changes with tyres, load, mounting).
DEFAULT_DAYS = 90


@dataclass(frozen=True)
class CalibrationRun:
    run_id: int
    calibration: Calibration
    window_from: datetime | None
    window_to: datetime | None


def load_reference_csv(path: str | Path) -> list[tuple[str, float, date | None, str]]:
    """Rows of a reference CSV: columns ``segment_id, iri_m_per_km`` and optionally
    ``surveyed_on`` (ISO date) and ``source``."""
    out = []
    with Path(path).open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            iri = float(r["iri_m_per_km"])
            if not iri > 0:
                raise ValueError(f"{path}: segment {r['segment_id']}: iri_m_per_km must be > 0, got {iri}")
            day = date.fromisoformat(r["surveyed_on"]) if r.get("surveyed_on") else None
            out.append((r["segment_id"], iri, day, r.get("source") or "profilometer"))
    return out


def write_references(conn: psycopg.Connection, rows: list[tuple[str, float, date | None, str]]) -> int:
    """Upsert reference segments (segment_id, IRI m/km, survey date, source); returns the count."""
    try:
        with conn.transaction():
            for part in row_chunks([[r[0] for r in rows]], [True], max_bytes=message_budget(conn) // 2):
                chunk = rows[part]
                conn.execute(
                    "INSERT INTO reference_segments (segment_id, iri_m_per_km, surveyed_on, source)"
                    " SELECT * FROM unnest(%s::text[], %s::float8[], %s::date[], %s::text[])"
                    " ON CONFLICT (segment_id) DO UPDATE SET iri_m_per_km = EXCLUDED.iri_m_per_km,"
                    " surveyed_on = EXCLUDED.surveyed_on, source = EXCLUDED.source",
                    ([r[0] for r in chunk], [r[1] for r in chunk], [r[2] for r in chunk], [r[3] for r in chunk]),
                )
        if not conn.autocommit:
            conn.commit()
    except psycopg.Error as exc:
        raise DatabaseError(f"writing reference segments failed: {exc}", sqlstate=exc.sqlstate) from exc
    return len(rows)


def read_references(conn: psycopg.Connection) -> dict[str, float]:
    return {s: float(v) for s, v in conn.execute("SELECT segment_id, iri_m_per_km FROM reference_segments").fetchall()}


def run_calibration(
    conn: psycopg.Connection, *, days: float = DEFAULT_DAYS, min_references: int = MIN_REFERENCES
) -> CalibrationRun:
    """Calibrate the fleet on the last ``days`` days of data and store the gains.

    Needs a connection without an open transaction (the writes are one transaction).
    """
    if not days > 0:
        raise ValueError(f"{days=} must be > 0")
    try:
        rows = conn.execute(
            "WITH w AS (SELECT max(day) AS last FROM segment_vehicle_daily)"
            " SELECT d.vehicle, d.segment_id, sum(d.mean_iri_m_per_km * d.n_iri) / sum(d.n_iri),"
            "        min(d.day), max(d.day)"
            " FROM segment_vehicle_daily AS d, w"
            " WHERE d.n_iri > 0 AND d.day > w.last - make_interval(secs => %s)"
            " GROUP BY d.vehicle, d.segment_id ORDER BY d.vehicle, d.segment_id",
            (float(days) * 86400.0,),
        ).fetchall()
        refs = read_references(conn)
    except psycopg.Error as exc:
        raise DatabaseError(f"reading the calibration input failed: {exc}", sqlstate=exc.sqlstate) from exc
    cal = calibrate(
        np.array([r[2] for r in rows], float), [r[0] for r in rows], [r[1] for r in rows],
        reference_iri=refs, min_references=min_references,
    )  # fmt: skip
    w_from = min((r[3] for r in rows), default=None)
    w_to = max((r[4] for r in rows), default=None)
    vehicles = sorted(cal.gains)
    try:
        with conn.transaction():
            run_id = conn.execute(
                "INSERT INTO calibration_runs (anchor, default_gain, n_vehicles, n_calibrated, n_references, n_rows,"
                " window_from, window_to) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING run_id",
                (cal.anchor, cal.default_gain, cal.n_vehicles, len(vehicles), cal.n_references, cal.n_rows,
                 w_from, w_to),
            ).fetchone()[0]  # fmt: skip
            conn.execute("DELETE FROM vehicle_gains")
            for part in row_chunks([vehicles], [True], max_bytes=message_budget(conn) // 2):
                vs = vehicles[part]
                conn.execute(
                    "INSERT INTO vehicle_gains (vehicle, gain, n_segments, run_id)"
                    " SELECT v, g, n, %s FROM unnest(%s::text[], %s::float8[], %s::int[]) AS t(v, g, n)",
                    (run_id, vs, [cal.gains[v] for v in vs], [cal.n_segments.get(v, 0) for v in vs]),
                )
        if not conn.autocommit:
            conn.commit()  # the reads opened a transaction: the block above was a savepoint
    except psycopg.Error as exc:
        raise DatabaseError(f"writing the calibration failed: {exc}", sqlstate=exc.sqlstate) from exc
    return CalibrationRun(int(run_id), cal, w_from, w_to)
