"""Plain-text tables of what the road-maintenance team asks first (CLI and demo)."""

from __future__ import annotations

import psycopg

from pipeline import queries

__all__ = ["print_top"]

ATTRIBUTION = "Road geometry © OpenStreetMap contributors, ODbL 1.0"


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def print_top(conn: psycopg.Connection, *, limit: int = 10, min_passes: int = 2) -> None:
    """Print the roughest segments and the harshest spots, each labelled for a person."""
    total = queries.pass_count(conn)
    print(f"{total.n_passes} segment passes by {total.n_vehicles} vehicles on {total.n_segments} segments, "
          f"{total.n_events} harsh events")
    rough = queries.roughest_segments(conn, limit=limit, min_passes=min_passes)
    print(f"\nRoughest segments (IRI, m/km: median across vehicles [IQR]; >= {min_passes} passes)")
    print(f"{'IRI':>6} {'[p25-p75]':>13} {'level':>5} {'passes':>6} {'veh':>4}  where")
    for s in rough:
        print(f"{_fmt(s.iri_m_per_km):>6} {_fmt(s.iri_p25_m_per_km) + '-' + _fmt(s.iri_p75_m_per_km):>13} "
              f"{s.level or '-':>5} {s.n_passes:>6} {s.n_vehicles:>4}  {s.label}  [segment {s.segment_id}]")
    if not rough:
        print("  (no segment has enough passes yet)")
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
