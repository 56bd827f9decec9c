"""Segment scores: robust aggregates of passes, the same definition as the database view.

For each segment: every vehicle's mean IRI over its passes, then the median across
vehicles (a vehicle that drives a segment daily does not outweigh ten that drive it once),
with the interquartile range across vehicles as the interval, the number of passes and of
distinct vehicles, and a level. ``sql/`` defines ``segment_scores`` identically
(``percentile_cont`` = linear interpolation = ``numpy.percentile``'s default); the
integration tests compare the two on the same passes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from agents.roughness import IRI_LEVEL_THRESHOLDS_M_PER_KM
from schemas.records import HarshEvent, SegmentPass

__all__ = ["SegmentScore", "segment_scores", "iri_level", "IRI_GOOD_MAX", "IRI_FAIR_MAX"]

# Thresholds in m/km, defined once in agents.roughness (and in the SQL function iri_level()).
IRI_GOOD_MAX, IRI_FAIR_MAX = IRI_LEVEL_THRESHOLDS_M_PER_KM


def iri_level(iri_m_per_km: float | None) -> str | None:
    """'good' below 2.5 m/km, 'fair' below 4.0, else 'poor'; None without an estimate."""
    if iri_m_per_km is None or not np.isfinite(iri_m_per_km):
        return None
    if iri_m_per_km < IRI_GOOD_MAX:
        return "good"
    return "fair" if iri_m_per_km < IRI_FAIR_MAX else "poor"


@dataclass(frozen=True)
class SegmentScore:
    """Score of one segment over all its passes (IRI in m/km)."""

    segment_id: str
    n_passes: int
    n_vehicles: int
    n_iri_vehicles: int
    iri_m_per_km: float | None
    iri_p25: float | None
    iri_p75: float | None
    level: str | None
    n_harsh_events: int
    harsh_per_1000_passes: float
    mean_speed_kmh: float

    @staticmethod
    def columns() -> list[str]:
        return [f.name for f in fields(SegmentScore)]

    def as_row(self) -> dict:
        return asdict(self)


def segment_scores(passes: Sequence[SegmentPass], events: Sequence[HarshEvent] = ()) -> list[SegmentScore]:
    """Aggregate passes per segment (sorted by segment id)."""
    by_seg: dict[str, list[SegmentPass]] = defaultdict(list)
    for p in passes:
        by_seg[p.segment_id].append(p)
    out = []
    for seg in sorted(by_seg):
        ps = by_seg[seg]
        per_vehicle: dict[str, list[float]] = defaultdict(list)
        for p in ps:
            if p.iri_m_per_km is not None:
                per_vehicle[p.vehicle].append(p.iri_m_per_km)
        means = np.array([np.mean(v) for v in per_vehicle.values()], float)
        if means.size:
            med, p25, p75 = (float(x) for x in np.percentile(means, [50, 25, 75]))
        else:
            med = p25 = p75 = None
        n_ev = int(sum(p.n_harsh_events for p in ps))
        out.append(
            SegmentScore(
                segment_id=seg,
                n_passes=len(ps),
                n_vehicles=len({p.vehicle for p in ps}),
                n_iri_vehicles=int(means.size),
                iri_m_per_km=med,
                iri_p25=p25,
                iri_p75=p75,
                level=iri_level(med),
                n_harsh_events=n_ev,
                harsh_per_1000_passes=1000.0 * n_ev / len(ps),
                mean_speed_kmh=float(np.mean([p.mean_speed_kmh for p in ps])),
            )
        )
    return out
