"""Plain-text tables of what the road-maintenance team asks first (CLI and demo)."""

from __future__ import annotations

import psycopg

from pipeline import queries

__all__ = ["print_top"]

ATTRIBUTION = "Road geometry © OpenStreetMap contributors, ODbL 1.0"


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def print_top(conn: psycopg.Connection, *, limit: int = 10, min_passes: int = 2) -> None:
    """Print the roughest segments, the confirmed potholes and the harshest spots, each
    labelled for a person."""
    total = queries.pass_count(conn)
    print(f"{total.n_passes} segment passes by {total.n_vehicles} vehicles on {total.n_segments} segments, "
          f"{total.n_events} harsh events")
    rough = queries.roughest_segments(conn, limit=limit, min_passes=min_passes)
    print(f"\nRoughest segments (IRI, m/km: median across vehicles [IQR]; >= {min_passes} passes)")
    print(f"{'IRI':>6} {'[p25-p75]':>13} {'level':>5} {'conf':>4} {'passes':>6} {'veh':>4}  where")
    for s in rough:
        print(f"{_fmt(s.iri_m_per_km):>6} {_fmt(s.iri_p25_m_per_km) + '-' + _fmt(s.iri_p75_m_per_km):>13} "
              f"{s.level or '-':>5} {_fmt(s.confidence, '.2f'):>4} {s.n_passes:>6} {s.n_vehicles:>4}  {s.label}  "
              f"[segment {s.segment_id}]")
    if not rough:
        print("  (no segment has enough passes yet)")
    holes = queries.potholes(conn, limit=limit)
    print("\nConfirmed potholes (the most probable first; conf = probability that it is a real hole)")
    print(f"{'conf':>4} {'veh':>4} {'impacts':>7} {'at m':>6}  where")
    for a in holes:
        print(f"{a.confidence:>4.2f} {a.n_vehicles:>4} {a.n_impacts:>7} {a.position_m:>6.1f}  {a.label}  "
              f"[segment {a.segment_id}]")
    if not holes:
        print("  (no pothole confirmed yet: it takes 3 distinct vehicles)")
    spots = queries.harshest_spots(conn, limit=limit, min_passes=min_passes)
    print(f"\nHarshest spots (harsh events per 1,000 passes; >= {min_passes} passes)")
    print(f"{'rate':>7} {'events':>6} {'brake/accel/corner':>18} {'passes':>6} {'veh':>4}  where")
    for h in spots:
        print(f"{_fmt(h.events_per_1000_passes, '.0f'):>7} {h.n_events:>6} "
              f"{f'{h.n_harsh_brake}/{h.n_harsh_accel}/{h.n_harsh_corner}':>18} {h.n_passes:>6} "
              f"{h.n_vehicles:>4}  {h.label}  [segment {h.segment_id}]")
    if not spots:
        print("  (no harsh event recorded yet)")
    print(f"\n{ATTRIBUTION}")


def passes_per_segment(conn: psycopg.Connection, net, since=None, until=None):
    """(n_segments,) stored passes per network segment, optionally with ``since <=
    entry_time < until`` (aware datetimes); segments unknown to ``net`` are left out."""
    import numpy as np

    n_passes = np.zeros(len(net), float)
    rows = conn.execute(
        "SELECT segment_id, count(*) FROM segment_passes "
        "WHERE (%(t0)s::timestamptz IS NULL OR entry_time >= %(t0)s) AND (%(t1)s::timestamptz IS NULL OR entry_time < %(t1)s) "
        "GROUP BY segment_id", {"t0": since, "t1": until},
    ).fetchall()  # fmt: skip
    if rows:
        idx = net.indices_of([r[0] for r in rows])
        ok = idx >= 0
        n_passes[idx[ok]] = np.asarray([r[1] for r in rows], float)[ok]
    return n_passes


def hotspot_inputs_from_db(conn: psycopg.Connection, net) -> tuple:
    """(passes per network segment, event segment indices, event offsets) from the database.

    Reads the raw tables (owner role): the ranking needs event positions along segments.
    """
    import numpy as np

    n_passes = passes_per_segment(conn, net)
    ev = conn.execute("SELECT segment_id, offset_m FROM harsh_events ORDER BY start_time, vehicle, type").fetchall()
    seg = net.indices_of([r[0] for r in ev]) if ev else np.zeros(0, np.int64)
    off = np.asarray([r[1] for r in ev], float)
    return n_passes, seg, off


def hotspot_inputs_from_records(passes, events, net) -> tuple:
    """The same inputs from pass and event records (``roadsense score``, tests)."""
    import numpy as np

    n_passes = np.zeros(len(net), float)
    np.add.at(n_passes, net.indices_of([p.segment_id for p in passes]), 1.0)
    seg = net.indices_of([e.segment_id for e in events]) if events else np.zeros(0, np.int64)
    off = np.asarray([e.offset_m for e in events], float)
    return n_passes, seg, off


def print_hotspots(conn: psycopg.Connection, net, *, limit: int = 10) -> None:
    """Accident-prone zones: exposure-normalised, shrunk towards similar roads (agents.hotspots)."""
    from agents.hotspots import format_hotspots, rank_hotspots

    ranking = rank_hotspots(*hotspot_inputs_from_db(conn, net), net)
    print(f"Accident-prone zones, by the probability that their harsh-event rate is at least "
          f"{ranking.excess_factor:g}x that of similar roads (per vehicle-km, empirical Bayes by road class)")
    print(format_hotspots(ranking, net, top=limit))
    print(f"\n{ATTRIBUTION}")
