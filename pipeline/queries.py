"""The read side: segment scores, pothole alerts and harsh spots for the CLI, the demo and
the HTTP API.

Every query reads only objects granted to ``roadsense_reader`` (``segment_scores``,
``segment_scores_between()``, ``harsh_spots``, ``pass_totals``, ``road_alerts``,
``segments``), never the raw per-vehicle tables, and gives the same answer on TimescaleDB
and plain PostgreSQL. Results are small frozen dataclasses; IRI in m/km, speeds in km/h,
days are UTC midnights (aware datetimes).

Orderings are total (ties broken by ``segment_id``); IRI is compared rounded to 1e-6 m/km,
so float rounding differences between the two dialects cannot reorder results.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pipeline.exceptions import DatabaseError

__all__ = [
    "HarshSpot",
    "PassCount",
    "PotholeAlert",
    "SegmentScore",
    "harshest_spots",
    "pass_count",
    "potholes",
    "roughest_segments",
    "segment_label",
    "segment_score",
]


def segment_label(
    segment_id: str,
    ref: str | None,
    osm_way_id: int | None,
    highway: str | None,
    lat: float | None,
    lon: float | None,
) -> str:
    """``"D 30 (primary) at 48.81234, 1.95678"``; ``"OSM way N"`` when there is no ref.

    Same format as ``RoadNetwork.label``; a segment missing from ``segments`` is labelled
    ``"segment <id>"``.
    """
    if highway is None and lat is None:
        return f"segment {segment_id}"
    road = ref or (f"OSM way {osm_way_id}" if osm_way_id is not None else f"segment {segment_id}")
    kind = f" ({highway})" if highway is not None else ""
    where = f" at {lat:.5f}, {lon:.5f}" if lat is not None and lon is not None else ""
    return f"{road}{kind}{where}"


@dataclass(frozen=True, slots=True)
class SegmentScore:
    """Road-surface score of one segment over a window.

    ``iri_m_per_km`` is the median across vehicles of each vehicle's mean IRI,
    ``iri_p25_m_per_km``/``iri_p75_m_per_km`` the interquartile range of those means (read
    ``n_vehicles_iri``: with one vehicle the interval is a point). ``level`` is
    ``iri_level()`` of the median (good/fair/poor, thresholds in sql/001). ``confidence``
    (0..1) is the mean confidence of the passes with an IRI times the vehicle coverage
    ``1 - exp(-n_vehicles_iri / 2)`` (sql/010): lower with few vehicles or low-rate sensors.
    """

    segment_id: str
    label: str
    ref: str | None
    osm_way_id: int | None
    highway: str | None
    lat: float | None
    lon: float | None
    n_passes: int
    n_vehicles: int
    n_vehicles_iri: int
    iri_m_per_km: float | None
    iri_p25_m_per_km: float | None
    iri_p75_m_per_km: float | None
    level: str | None
    n_harsh_events: int
    harsh_per_1000_passes: float | None
    mean_speed_kmh: float | None
    first_day: datetime
    last_day: datetime
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class HarshSpot:
    """Harsh driving on one segment over all stored history (rows of ``harsh_events``)."""

    segment_id: str
    label: str
    ref: str | None
    osm_way_id: int | None
    highway: str | None
    lat: float | None
    lon: float | None
    n_passes: int
    n_vehicles: int
    n_vehicles_with_events: int
    n_events: int
    n_harsh_brake: int
    n_harsh_accel: int
    n_harsh_corner: int
    events_per_1000_passes: float | None


@dataclass(frozen=True, slots=True)
class PotholeAlert:
    """A pothole confirmed across vehicles (``road_alerts``, stage 2).

    ``position_m`` is along the segment; ``lat``/``lon`` the alert's own place (WGS84), and
    ``label`` names the road there. ``confidence`` is the probability that it is a real hole
    (``agents.potholes.pothole_confidence``; x 0.6 when its evidence was sampled below 50
    Hz). ``n_vehicles`` distinct vehicles confirmed it with ``n_impacts`` impacts.
    """

    alert_id: str
    segment_id: str
    label: str
    position_m: float
    lat: float | None
    lon: float | None
    confidence: float
    n_vehicles: int
    n_impacts: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class PassCount:
    """Totals over all stored history: passes, distinct vehicles/segments, first/last UTC day."""

    n_passes: int
    n_vehicles: int
    n_segments: int
    n_events: int
    first_day: datetime | None
    last_day: datetime | None


_SCORE_COLUMNS = """segment_id, ref, osm_way_id, highway, mid_lat, mid_lon, n_passes, n_vehicles,
    n_vehicles_iri, iri_m_per_km, iri_p25_m_per_km, iri_p75_m_per_km, level, n_harsh_events,
    harsh_per_1000_passes, mean_speed_kmh, first_day, last_day, confidence"""


def _score(row: dict[str, Any]) -> SegmentScore:
    return SegmentScore(
        segment_id=row["segment_id"],
        label=segment_label(
            row["segment_id"], row["ref"], row["osm_way_id"], row["highway"],
            row["mid_lat"], row["mid_lon"],
        ),
        ref=row["ref"],
        osm_way_id=row["osm_way_id"],
        highway=row["highway"],
        lat=row["mid_lat"],
        lon=row["mid_lon"],
        n_passes=row["n_passes"],
        n_vehicles=row["n_vehicles"],
        n_vehicles_iri=row["n_vehicles_iri"],
        iri_m_per_km=row["iri_m_per_km"],
        iri_p25_m_per_km=row["iri_p25_m_per_km"],
        iri_p75_m_per_km=row["iri_p75_m_per_km"],
        level=row["level"],
        n_harsh_events=row["n_harsh_events"],
        harsh_per_1000_passes=row["harsh_per_1000_passes"],
        mean_speed_kmh=row["mean_speed_kmh"],
        first_day=row["first_day"],
        last_day=row["last_day"],
        confidence=row["confidence"],
    )


def _fetch(conn: psycopg.Connection, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchall()  # type: ignore[arg-type]
    except psycopg.Error as exc:
        raise DatabaseError(f"query failed: {exc}", sqlstate=exc.sqlstate) from exc


def _check_limit(limit: int) -> None:
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"{limit=} must be an integer >= 1")


def _check_limits(limit: int, min_passes: int) -> None:
    _check_limit(limit)
    if not isinstance(min_passes, int) or min_passes < 0:
        raise ValueError(f"{min_passes=} must be an integer >= 0")


def roughest_segments(
    conn: psycopg.Connection,
    *,
    limit: int = 10,
    min_passes: int = 1,
    since: datetime | None = None,
) -> list[SegmentScore]:
    """Segments with the highest robust IRI (m/km), roughest first.

    Only segments with an IRI and at least ``min_passes`` passes. ``since`` (aware
    datetime) keeps the whole UTC days from the one containing it; default all history.
    Ties: more passes first, then ``segment_id``.
    """
    _check_limits(limit, min_passes)
    if since is not None and since.tzinfo is None:
        raise ValueError(f"{since=} must be timezone-aware (UTC)")
    source = "segment_scores" if since is None else "segment_scores_between(%s, NULL, NULL)"
    params: tuple[Any, ...] = () if since is None else (since,)
    rows = _fetch(
        conn,
        f"SELECT {_SCORE_COLUMNS} FROM {source}"
        " WHERE iri_m_per_km IS NOT NULL AND n_passes >= %s"
        " ORDER BY round(iri_m_per_km::numeric, 6) DESC, n_passes DESC, segment_id"
        " LIMIT %s",
        (*params, min_passes, limit),
    )
    return [_score(r) for r in rows]


def segment_score(
    conn: psycopg.Connection, segment_id: str, *, since: datetime | None = None
) -> SegmentScore | None:
    """The score of one segment over all history (or since ``since``); ``None`` if no passes."""
    if since is not None and since.tzinfo is None:
        raise ValueError(f"{since=} must be timezone-aware (UTC)")
    rows = _fetch(
        conn,
        f"SELECT {_SCORE_COLUMNS} FROM segment_scores_between(%s, NULL, %s)",
        (since, segment_id),
    )
    return _score(rows[0]) if rows else None


def harshest_spots(
    conn: psycopg.Connection, *, limit: int = 10, min_passes: int = 1
) -> list[HarshSpot]:
    """Segments with the most harsh events per 1,000 passes, worst first.

    Only segments with at least one event and ``min_passes`` passes. Ties: more events
    first, then ``segment_id``.
    """
    _check_limits(limit, min_passes)
    rows = _fetch(
        conn,
        "SELECT segment_id, ref, osm_way_id, highway, mid_lat, mid_lon, n_passes, n_vehicles,"
        " n_vehicles_with_events, n_events, n_harsh_brake, n_harsh_accel, n_harsh_corner,"
        " events_per_1000_passes FROM harsh_spots WHERE n_passes >= %s"
        " ORDER BY events_per_1000_passes DESC NULLS LAST, n_events DESC, segment_id LIMIT %s",
        (min_passes, limit),
    )
    return [
        HarshSpot(
            segment_id=r["segment_id"],
            label=segment_label(
                r["segment_id"], r["ref"], r["osm_way_id"], r["highway"], r["mid_lat"], r["mid_lon"]
            ),
            ref=r["ref"],
            osm_way_id=r["osm_way_id"],
            highway=r["highway"],
            lat=r["mid_lat"],
            lon=r["mid_lon"],
            n_passes=r["n_passes"],
            n_vehicles=r["n_vehicles"],
            n_vehicles_with_events=r["n_vehicles_with_events"],
            n_events=r["n_events"],
            n_harsh_brake=r["n_harsh_brake"],
            n_harsh_accel=r["n_harsh_accel"],
            n_harsh_corner=r["n_harsh_corner"],
            events_per_1000_passes=r["events_per_1000_passes"],
        )
        for r in rows
    ]


def potholes(
    conn: psycopg.Connection, *, limit: int = 10, min_confidence: float = 0.0
) -> list[PotholeAlert]:
    """Confirmed potholes, the most probable first (ties: more vehicles, then ``alert_id``).

    Only alerts whose confidence is at least ``min_confidence`` (0..1).
    """
    _check_limit(limit)
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"{min_confidence=} must be within [0, 1]")
    rows = _fetch(
        conn,
        "SELECT a.alert_id, a.segment_id, a.position_m, a.lat_deg, a.lon_deg, a.confidence,"
        " a.n_vehicles, a.n_impacts, a.first_seen, a.last_seen, s.ref, s.osm_way_id, s.highway"
        " FROM road_alerts a LEFT JOIN segments s ON s.segment_id = a.segment_id"
        " WHERE a.kind = 'pothole' AND a.confidence >= %s"
        " ORDER BY round(a.confidence::numeric, 6) DESC, a.n_vehicles DESC, a.alert_id LIMIT %s",
        (min_confidence, limit),
    )
    return [
        PotholeAlert(
            alert_id=r["alert_id"],
            segment_id=r["segment_id"],
            label=segment_label(
                r["segment_id"], r["ref"], r["osm_way_id"], r["highway"], r["lat_deg"], r["lon_deg"]
            ),
            position_m=r["position_m"],
            lat=r["lat_deg"],
            lon=r["lon_deg"],
            confidence=r["confidence"],
            n_vehicles=r["n_vehicles"],
            n_impacts=r["n_impacts"],
            first_seen=r["first_seen"],
            last_seen=r["last_seen"],
        )
        for r in rows
    ]


def pass_count(conn: psycopg.Connection) -> PassCount:
    """Totals over all stored history, from the ``pass_totals`` view (zeros when empty)."""
    rows = _fetch(
        conn,
        "SELECT n_passes, n_vehicles, n_segments, n_events, first_day, last_day FROM pass_totals",
        (),
    )
    return PassCount(**rows[0])
