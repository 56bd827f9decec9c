"""Segment scores: robust aggregates of passes, the same definition as the database view.

For each segment: every vehicle's mean IRI over its passes, then the median across
vehicles (a vehicle that drives a segment daily does not outweigh ten that drive it once),
with the interquartile range across vehicles as the interval, the number of passes and of
distinct vehicles, and a level. ``sql/`` defines ``segment_scores`` identically
(``percentile_cont`` = linear interpolation = ``numpy.percentile``'s default); the
integration tests compare the two on the same passes.

Fleet self-calibration (``sql/009``): each vehicle's mean IRI is divided by its gain before
the median across vehicles; a vehicle without a gain gets the calibration's
``default_gain``. :func:`calibrate` is the calibration job's computation (the database job
``pipeline.calibration`` and ``roadsense score`` both call it on the same per-(vehicle,
segment) means), :func:`segment_scores` applies its result as the SQL does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from agents.roughness import IRI_LEVEL_THRESHOLDS_M_PER_KM, fleet_calibrate
from schemas.records import HarshEvent, SegmentPass

__all__ = [
    "Calibration",
    "SegmentScore",
    "calibrate",
    "segment_scores",
    "vehicle_segment_means",
    "iri_level",
    "IRI_GOOD_MAX",
    "IRI_FAIR_MAX",
    "MIN_REFERENCES",
    "MIN_SHARED_SEGMENTS",
]

#: Reference segments (known IRI) with fleet data needed to anchor on them; fewer, and one
#: survey's error (or one segment's model error, ~12 %) would move the whole fleet's scale.
MIN_REFERENCES = 3
#: A vehicle gets its own gain once it has driven this many segments also driven by others.
MIN_SHARED_SEGMENTS = 3

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
    #: 0..1: mean confidence of the passes with an IRI x vehicle coverage ``1 - exp(-n / 2)``
    #: (n: vehicles with an IRI); None without an IRI. A 10 Hz fleet reads ~0.6 of a 100 Hz one.
    confidence: float | None = None

    @staticmethod
    def columns() -> list[str]:
        return [f.name for f in fields(SegmentScore)]

    def as_row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Calibration:
    """Result of one calibration run (the rows of ``calibration_runs`` and ``vehicle_gains``).

    Attributes
    ----------
    gains : vehicle -> gain (dimensionless; divide the vehicle's IRI by it), calibrated
        vehicles only
    default_gain : gain of every other vehicle (median of ``gains`` in log space; 1 without any)
    anchor : ``"reference"`` (scale set by reference segments) or ``"fleet_median"``
        (median gain 1, the physics prior)
    n_vehicles : vehicles with IRI rows; ``n_references`` reference segments used;
        ``n_rows`` (vehicle, segment) means used; ``n_segments`` vehicle -> segments shared
    """

    gains: dict[str, float]
    default_gain: float = 1.0
    anchor: str = "fleet_median"
    n_vehicles: int = 0
    n_references: int = 0
    n_rows: int = 0
    n_segments: dict[str, int] = field(default_factory=dict)

    def gain_of(self, vehicle: str) -> float:
        return self.gains.get(vehicle, self.default_gain)


def vehicle_segment_means(passes: Sequence[SegmentPass]) -> tuple[np.ndarray, list[str], list[str]]:
    """Mean IRI (m/km) of each (vehicle, segment) over its passes with an IRI.

    The calibration's input: one value per vehicle and segment, so a commuter's hundred
    passes on one street are one vote for its gain. Same as the database's
    ``sum(mean_iri_m_per_km * n_iri) / sum(n_iri)`` over ``segment_vehicle_daily``.
    Returns (means, vehicles, segments) sorted by (vehicle, segment).
    """
    acc: dict[tuple[str, str], list[float]] = defaultdict(list)
    for p in passes:
        if p.iri_m_per_km is not None:
            acc[(p.vehicle, p.segment_id)].append(p.iri_m_per_km)
    keys = sorted(acc)
    return (np.array([np.mean(acc[k]) for k in keys], float), [k[0] for k in keys], [k[1] for k in keys])


def calibrate(
    mean_iri: np.ndarray,
    vehicles: Sequence[str],
    segments: Sequence[str],
    *,
    reference_iri: dict[str, float] | None = None,
    min_references: int = MIN_REFERENCES,
    min_shared: int = MIN_SHARED_SEGMENTS,
) -> Calibration:
    """Per-vehicle gains from per-(vehicle, segment) mean IRIs (m/km), anchored.

    Runs :func:`agents.roughness.fleet_calibrate` (alternating medians of log ratios). The
    anchor is ``reference_iri`` (segment -> measured IRI, m/km) when at least
    ``min_references`` of those segments have fleet data; otherwise the median gain of the
    calibrated vehicles is 1 (the physics prior is right on average over the fleet).
    Vehicles sharing fewer than ``min_shared`` segments with others get no gain of their
    own: they use ``default_gain``, the median of the calibrated gains.
    """
    e = np.asarray(mean_iri, float)
    veh = np.asarray(list(vehicles), dtype=object)
    seg = np.asarray(list(segments), dtype=object)
    ok = np.isfinite(e) & (e > 0)
    e, veh, seg = e[ok], veh[ok], seg[ok]
    if e.size == 0:
        return Calibration(gains={})
    refs = {s: float(v) for s, v in (reference_iri or {}).items() if v and v > 0}
    driven = set(seg.tolist())
    used = {s: v for s, v in refs.items() if s in driven}
    anchor = "reference" if len(used) >= max(1, min_references) else "fleet_median"
    g = fleet_calibrate(e, veh, seg, reference_iri=used if anchor == "reference" else None, min_shared=min_shared)
    # which vehicles were free to get their own gain (same rule as fleet_calibrate's)
    seg_vehicles: dict[str, set] = defaultdict(set)
    for v, s in zip(veh, seg):
        seg_vehicles[s].add(v)
    shared: dict[str, set] = defaultdict(set)
    for v, s in zip(veh, seg):
        if len(seg_vehicles[s]) >= 2:
            shared[v].add(s)
    n_shared = {str(v): len(shared.get(v, ())) for v in g}
    gains = {str(v): float(x) for v, x in g.items() if n_shared[str(v)] >= min_shared}
    # the median in log space, as fleet_calibrate anchors (exactly 1 under the median anchor)
    default = float(np.exp(np.median(np.log(list(gains.values()))))) if gains else 1.0
    if not gains and anchor == "reference":
        # nobody calibrated: the reference still fixes the common scale of the fleet
        default = float(next(iter(g.values())))
    return Calibration(
        gains=gains, default_gain=default, anchor=anchor, n_vehicles=len(g),
        n_references=len(used) if anchor == "reference" else 0, n_rows=int(e.size), n_segments=n_shared,
    )  # fmt: skip


def segment_scores(
    passes: Sequence[SegmentPass],
    events: Sequence[HarshEvent] = (),
    calibration: Calibration | None = None,
) -> list[SegmentScore]:
    """Aggregate passes per segment (sorted by segment id).

    With ``calibration``, each vehicle's mean IRI is divided by its gain (or the default
    gain), as ``segment_scores_between`` does with ``vehicle_gains`` (sql/009).
    """
    by_seg: dict[str, list[SegmentPass]] = defaultdict(list)
    for p in passes:
        by_seg[p.segment_id].append(p)
    out = []
    for seg in sorted(by_seg):
        ps = by_seg[seg]
        per_vehicle: dict[str, list[float]] = defaultdict(list)
        conf = []
        for p in ps:
            if p.iri_m_per_km is not None:
                per_vehicle[p.vehicle].append(p.iri_m_per_km)
                conf.append(p.confidence)
        gain = calibration.gain_of if calibration is not None else (lambda _v: 1.0)
        means = np.array([np.mean(v) / gain(k) for k, v in per_vehicle.items()], float)
        if means.size:
            med, p25, p75 = (float(x) for x in np.percentile(means, [50, 25, 75]))
            confidence = float(np.mean(conf)) * (1.0 - math.exp(-means.size / 2.0))
        else:
            med = p25 = p75 = confidence = None
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
                confidence=confidence,
            )
        )
    return out
