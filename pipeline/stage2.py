"""Stage 2, keyed by segment: pothole confirmation across vehicles, live road alerts.

Transport-free: :func:`handle_records` is a pure function of a segment's state, the new
impacts (``schemas.records.PassImpact``, topic ``segment.impacts``) and passes
(``schemas.records.SegmentPass``, topic ``segment.passes``, same key and partitions) of
that segment and the current time; the Faust agent keeps :class:`SegmentState` in a table
keyed by segment id (its :meth:`~SegmentState.to_bytes` form) and sends the returned
alerts to ``road.alerts`` and the database (:func:`pipeline.alerts_sink.write_alerts`).

Per call:

1. the new impacts and passes join the segment's recent ones, deduplicated on their
   natural keys ((vehicle, time) and (vehicle, entry time)), so a replayed message changes
   nothing; impacts and passes sampled below ``min_fs_hz`` (50 Hz) are dropped: at 10 Hz a
   pothole's shock is aliased, so such impacts never confirm anything, and such passes
   could not have registered one. A pass is kept as its coverage only (vehicle, entry and
   exit times, the offsets it drove between);
2. impacts and passes older than ``ttl_days`` are forgotten (and alerts not seen for as
   long), and at most ``max_impacts`` / ``max_passes`` (the newest) are kept: the state
   stays small;
3. when impacts arrived, impacts are clustered along the segment (single linkage,
   ``gap_m``) and the clusters they joined are confirmed with
   :func:`agents.potholes.cluster_impacts` / :func:`agents.potholes.confirm`; a cluster
   longer than ``max_cluster_span_m`` (a busy rough road's random shocks chain a whole
   segment) is read in a window of that length around each new impact, and from its
   ``max_cluster_impacts`` newest impacts, so that a call's cost does not grow with the
   state (``bench/stage2_cpu.py``). A pothole needs ``min_vehicles`` distinct vehicles
   with the pothole signature and a median peak of ``min_peak_mps2``, or a weaker one far
   above its road's scale into which both wheels of a vehicle dropped, ``weak_*`` (speed
   bumps and rail crossings, up-first or slowed-for, are never potholes), **and a hit
   rate**: of the passes that drove over the cluster's position (in the period of the
   impacts read, when capped), the share with an impact in the cluster must reach
   ``min_hit_rate``. Nearly every vehicle
   driving over a pothole registers it, while a cluster of random spikes of a rough road
   is hit by a few of the many passes (see ``docs/decisions.md``). An impact whose pass is
   not (or no longer) in the state counts as a pass of its own, so the rate does not
   depend on whether a pass or its impacts arrive first;
4. a newly confirmed pothole gets an alert (``alert_id`` deterministic from the segment and
   its position when first confirmed); an existing alert within ``match_m`` is updated
   (``revision`` + 1) when its vehicles, impacts or confidence change. Only new or changed
   alerts are returned.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import orjson
import zstandard

from agents.potholes import Impact, cluster_impacts, confirm
from schemas.records import PassImpact, RoadAlert, SegmentPass

if TYPE_CHECKING:
    from roadnet import RoadNetwork

__all__ = ["Stage2Params", "SegmentState", "handle_records", "handle_impacts", "impact_record", "hit_rate",
           "STATE_VERSION"]  # fmt: skip

STATE_VERSION = 7
# A state's impacts, column by column and sorted by (time, vehicle): time (epoch s), offset,
# vehicle, polarity, slowdown, peak, n_lobes, speed, severity, fs, double_hit_m (NaN: single
# hit; added in version 2), speed_dip (NaN: unknown; added in version 5), rise_mps2 (NaN:
# unknown; added in version 6). Stored in this order.
_IMPACT_COLUMNS = ("t", "off", "veh", "pol", "slow", "peak", "lobes", "speed", "sev", "fs", "dh", "dip", "rise")
# Its passes (version 3), sorted by (entry time, vehicle): entry time, exit time (epoch s),
# vehicle, lowest and highest offset driven (m).
_PASS_COLUMNS = ("t0", "t1", "veh", "lo", "hi")
_VEH, _SEV, _PVEH = _IMPACT_COLUMNS.index("veh"), _IMPACT_COLUMNS.index("sev"), _PASS_COLUMNS.index("veh")
_DTYPES = {"veh": object, "pol": np.int64, "lobes": np.int64}  # the others float64
_OPTIONAL = ("dh", "dip", "rise")  # NaN in memory, null when stored, None in rows
_ZMAGIC = b"RS2Z"  # zstd-compressed state (JSON states start with "{")
_ZSTD_ABOVE = 4096
_ZC = zstandard.ZstdCompressor(level=1)
_ZD = zstandard.ZstdDecompressor()
_MATCH_S = 1.0  # an impact belongs to a pass of its vehicle within this of its times
_SAME_PASS_S = 30.0  # impacts without a known pass: one vehicle's within this are one pass

Columns = dict[str, np.ndarray]  # equal-length arrays by name; never modified in place


@dataclass(frozen=True, kw_only=True)
class Stage2Params:
    """Options of stage 2 (distances m)."""

    ttl_days: float = 90.0
    """Impacts (and alerts not seen again) older than this are forgotten."""
    min_vehicles: int = 3
    """Distinct vehicles needed to confirm a pothole."""
    gap_m: float = 5.0
    """Impacts of one cluster are at most this far apart (single linkage)."""
    match_m: float = 5.0
    """A confirmed cluster within this of an existing alert updates it."""
    max_impacts: int = 2000
    """At most this many impacts (the newest) are kept per segment."""
    max_cluster_span_m: float = 20.0
    """A cluster longer than this is read in a window of this length around each new
    impact: on a busy rough segment the random shocks of thousands of passes chain the
    whole segment into one cluster, whose median position and shares would describe no
    place (a pothole's impacts span its length, one wheelbase and the placement's noise,
    under 10 m)."""
    max_cluster_impacts: int = 100
    """At most this many impacts of a cluster (its newest) are read when it is confirmed,
    and its hit rate counts the passes of their period only: a pothole that fifty vehicles
    hit with both axles has said what it is, and a call's cost stays bounded
    (``bench/stage2_cpu.py``). An alert's ``n_vehicles`` and ``n_impacts`` then count
    these. On nine recorded seeds of 60 vehicles the alerts were those of whole clusters to
    the revision; on a seed of 300 vehicles the same 109 alerts, 7 of them counting 100
    impacts instead of 103-151, within 0.2 m of the same places and with fewer revisions
    (``docs/benchmarks.md``)."""
    signature: str = "polarity"
    """``agents.potholes.confirm`` signature: down-first impacts, whatever the speed (drivers
    brake for junctions as well as humps; humps and rails are up-first)."""
    min_pothole_fraction: float = 0.5
    """Down-first share needed where drivers do not slow down (0.6 before the axle-pair
    condition; on D-E roads the first lobe's polarity is close to random)."""
    slowed_pothole_fraction: float = 0.8
    """Down-first share needed where drivers slow down."""
    min_peak_mps2: float = 3.0
    """Median peak of a pothole cluster, m/s² (repeatable small shocks of rough roads are not
    potholes). Chosen on the development scenario (seed 1, training families) only."""
    min_axle_pair_fraction: float = 0.3
    """Share of a pothole cluster's vehicles hit by both axles, one wheelbase apart
    (``agents.potholes.Cluster.axle_pair_fraction``; 0 = no condition). A hole is hit by
    the front and then the rear wheel; a random shock of a rough road rarely twice, one
    wheelbase apart. Useful once the detector's scale looks ahead (fewer random impacts):
    development seeds 1, 3-6 (training families), with ``min_pothole_fraction`` 0.5 and the
    detector at 3.5 sigma, precision/recall 0.858/0.830 at 0, 0.933/0.830 at 0.3,
    0.965/0.802 at 0.4 (``docs/decisions.md``). With the causal detector it had traded
    recall for precision (seed 3: recall 0.76 -> 0.63 at 0.5)."""
    min_hit_rate: float = 0.5
    """Share of the passes over a pothole cluster's position (at >= ``min_fs_hz``) that
    registered an impact in it (0: no condition). Nearly every vehicle registers a pothole
    (development: median rate 1.0 at true potholes, 0.33-0.4 at other clusters), but on D-E
    roads the detector's threshold rises and a pothole can be hit by a third of the passes.
    Chosen on the development scenario only (seeds 1, 3, 4, 5, 6, training families): a
    precision/recall trade-off, pooled 0.885/0.812 without, 0.897/0.802 at 0.4, 0.903/0.797
    at 0.5, 0.906/0.792 at 0.6 (see ``docs/decisions.md``)."""
    weak_min_severity: float = 4.5
    """A cluster whose median peak is below ``min_peak_mps2`` (but at least
    ``weak_min_peak_mps2``) is still a pothole when its impacts stand far above their road:
    median severity (the detector's peak over its local scale, whitened signal) at least
    this (0 = no such rule), and both axles of a vehicle dropped into it
    (``weak_min_drop_pairs``). Shallow holes on smooth B-C roads give median peaks of 1.3-3
    m/s^2 at severities 5-13, the unlabelled dips of the random profile that every vehicle
    feels there 4-5 (development seeds 1, 3-6, ``docs/decisions.md``). 5.5 until the ninth
    session, 5.25 until the tenth; with the drop-pair condition (tenth session) 4.5: over
    24 recorded seeds, against 5.25 without it, one more hole, 11 fewer false alerts and
    the two rail crossings no longer confirmed."""
    weak_min_peak_mps2: float = 1.0
    """Lowest median peak of such a cluster, m/s^2."""
    weak_min_drop_pairs: int = 1
    """Vehicles whose front and rear wheels each dropped into a weak cluster on one pass
    (``agents.potholes.Cluster.drop_pair_vehicles``: two down-first impacts one wheelbase
    apart) that it needs (0 = no condition). On the final weak alerts of 24 recorded seeds,
    74 of 96 true holes had such a vehicle, 1 of 21 false alerts and 0 of 2 rail crossings;
    a later fresh seed (2096) had a rail crossing with one (``docs/decisions.md``, tenth
    session)."""
    dip_slowed_fraction: float = 0.5
    """A cluster where at least this share of the impacts are at a speed dip (the vehicle
    was >= 10 % faster both 1.5 s before and 1.5 s after the impact: ``agents.potholes.
    Impact.speed_dip``) is slowed for whatever its median slowdown: it needs
    ``slowed_pothole_fraction`` and gets no weak-cluster exception (0 = no such rule).
    Drivers slow down for humps and rails and speed up after them, while braking for a
    junction, or accelerating away from one, is monotonic across the spot. Recorded seeds
    1-7, 2051, 2052 (impacts within 6 m): at a speed dip 0.8 % of pothole impacts, 55 % at
    humps, 70 % at cushions, 34 % at rails. It removed the two bump/rail alerts of seed 2051 and
    changed nothing on the development seeds (``docs/decisions.md``)."""
    max_rise_ratio: float = 0.5
    """A cluster whose down-first impacts were, at the median, preceded by a rise of the
    body of at least this share of their peak (``agents.potholes.Cluster.rise_ratio``) is a
    hump or a cushion, never a pothole (0 = no such rule): it catches those driven so slowly
    that neither the slowdown nor the speed dip marks them. Down-first impacts below 35 km/h
    on 35 recorded seeds, each the first drop of its pass: median rise ratio 0.06 at holes
    (90th percentile 0.24), 0.54 at humps, 0.44 at cushions. Replayed on the 35 seeds
    (eleventh session), 0.5 removed 20 of the 121 alerts that were not holes, 3 of the 5
    designed features among them, and 11 of the 1,369 holes found (0.6: 12 alerts, the same
    3 designed features, 6 holes; ``docs/decisions.md``)."""
    slowed_max_rise_ratio: float = 0.3
    """The same bound for a cluster drivers slowed down for (median slowdown or speed dips;
    0 = ``max_rise_ratio``): a hole there is rarely approached over a rise, while a cushion
    driven at 21-27 km/h read 0.40 (fresh seed 2098). Over 41 recorded seeds with
    ``max_rise_ratio`` 0.5: designed features confirmed 3 -> 1, alerts that were not holes
    122 -> 109, holes found 1,613 -> 1,610 (0.25: 1 and 1,605; 0.35-0.4: 2;
    ``docs/decisions.md``)."""
    level_rise_ratio: float = 0.15
    """A slowed-for cluster whose rise ratio is below this (its drops came off a level road:
    no hump or cushion) needs ``min_pothole_fraction`` down-first, not
    ``slowed_pothole_fraction`` (0 = no such rule). Of the holes missed on 41 recorded seeds,
    36 failed only the 0.8 down-first share of slowed-for clusters. Replayed there (eleventh
    session): 0.15 found 15 holes more (1,625 of 1,840), precision 0.955 unchanged, the same
    single designed feature; 0.1: 12 more; 0.2: 18 more and a designed feature more
    (``docs/decisions.md``)."""
    max_passes: int = 2000
    """At most this many passes (the newest) are kept per segment as coverage; older
    impacts then no longer count for the hit rate (``SegmentState.coverage_from``)."""
    min_fs_hz: float = 50.0
    """Impacts sampled slower than this are not evidence: at 10 Hz the impact band stops at
    4.5 Hz, the wheel-hop shock (~10-15 Hz) is aliased and its polarity is random (on the
    development fleet at 10 Hz: no pothole found, and a speed hump confirmed as one). They
    are dropped on arrival, so they can neither confirm a pothole nor, mixed with 100 Hz
    impacts, lower a cluster's rate."""


def _columns(names: Sequence[str], values: Sequence[Sequence[Any]] | None = None) -> Columns:
    """Arrays of ``names`` from ``values`` (one sequence per column; None in an optional
    column becomes NaN), or empty ones."""
    if values is None:
        values = [()] * len(names)
    return {k: np.array(v, dtype=_DTYPES.get(k, np.float64)) for k, v in zip(names, values)}


def _n(cols: Columns) -> int:
    return int(next(iter(cols.values())).size)


def _take(cols: Columns, sel: Any) -> Columns:
    return {k: a[sel] for k, a in cols.items()}


def _rows(cols: Columns, names: Sequence[str]) -> list[list[Any]]:
    out = {k: cols[k].tolist() for k in names}
    for k in _OPTIONAL:
        if k in out:
            out[k] = [None if x != x else x for x in out[k]]  # NaN -> None
    return [list(r) for r in zip(*(out[k] for k in names))]


def _place_of(cols: Columns, t: float, veh: str, tk: str) -> tuple[int, bool]:
    """Where (time ``t``, vehicle ``veh``) goes in ``cols`` (sorted by (``tk``, vehicle)):
    the index of the first row whose key is not lower, and whether its key is equal."""
    ts, vs = cols[tk], cols["veh"]
    i = int(np.searchsorted(ts, t, side="left"))
    while i < ts.size and ts[i] == t and vs[i] < veh:
        i += 1
    return i, i < ts.size and ts[i] == t and vs[i] == veh


def _insert(cols: Columns, i: int, row: Sequence[Any], names: Sequence[str]) -> Columns:
    """``cols`` with ``row`` inserted before index ``i`` (new arrays)."""
    out = {}
    for k, v in zip(names, row):
        a = cols[k]
        b = np.empty(a.size + 1, a.dtype)  # (np.insert's generality costs ~10 us a column)
        b[:i], b[i], b[i + 1 :] = a[:i], v, a[i:]
        out[k] = b
    return out


@dataclass(eq=False)
class SegmentState:
    """What stage 2 remembers of one segment (small, serialisable).

    Attributes
    ----------
    segment_id : str
    impacts : columns ``t_s, offset_m, vehicle, polarity, slowdown, peak, n_lobes,
        speed_kmh, severity, fs_hz, double_hit_m, speed_dip, rise_mps2`` (NumPy arrays by
        the short names of ``_IMPACT_COLUMNS``; NaN: none), sorted by (time, vehicle);
        stored column by column since version 7 (a version-1 state's 10-value rows are read
        with ``double_hit_m`` NaN, rows before version 5 with ``speed_dip`` NaN (unknown:
        not counted in a cluster's dip fraction); states before version 4 hold severities
        of the band-passed detector, read as 0: they never count for
        ``Stage2Params.weak_min_severity``). :meth:`impact_rows` gives them as rows.
    passes : columns ``entry_t_s, exit_t_s, vehicle, lo_m, hi_m`` (the coverage: offsets
        driven between; ``_PASS_COLUMNS``), sorted by (entry time, vehicle) (version 3;
        older states have none: their impacts then count as passes of their own)
    coverage_from : epoch seconds from which the passes are complete (passes before were
        dropped by ``max_passes``); impacts before it do not count for the hit rate
    alerts : alert id -> ``{"position_m", "first_seen", "last_seen", "n_vehicles",
        "n_impacts", "confidence", "revision"}`` (times as epoch seconds)
    """

    segment_id: str
    impacts: Columns = field(default_factory=lambda: _columns(_IMPACT_COLUMNS))
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    passes: Columns = field(default_factory=lambda: _columns(_PASS_COLUMNS))
    coverage_from: float | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SegmentState):
            return NotImplemented
        return (self.segment_id, self.alerts, self.coverage_from, self.impact_rows(), self.pass_rows()) == (
            other.segment_id, other.alerts, other.coverage_from, other.impact_rows(), other.pass_rows())

    def impact_rows(self) -> list[list[Any]]:
        """The impacts as rows ``[t_s, offset_m, vehicle, ..., rise_mps2]`` (None: none)."""
        return _rows(self.impacts, _IMPACT_COLUMNS)

    def pass_rows(self) -> list[list[Any]]:
        """The passes as rows ``[entry_t_s, exit_t_s, vehicle, lo_m, hi_m]``."""
        return _rows(self.passes, _PASS_COLUMNS)

    def to_bytes(self) -> bytes:
        # column-wise (version 7), held as arrays: a busy segment's state, thousands of rows
        # rewritten with every record, is dumped by orjson from the arrays (NaN -> null);
        # pseudonyms (32 hex characters) once each, referred to by index
        imp, pas = self.impacts, self.passes
        vi, vp = imp["veh"].tolist(), pas["veh"].tolist()
        names = sorted(set(vi) | set(vp))  # (a dict beats np.unique's sort of Python strings)
        ix = {v: i for i, v in enumerate(names)}
        imp_cols = [np.fromiter(map(ix.__getitem__, vi), np.int64, len(vi)) if k == "veh" else imp[k]
                    for k in _IMPACT_COLUMNS]  # fmt: skip
        pas_cols = [np.fromiter(map(ix.__getitem__, vp), np.int64, len(vp)) if k == "veh" else pas[k]
                    for k in _PASS_COLUMNS]  # fmt: skip
        raw = orjson.dumps({"v": STATE_VERSION, "segment_id": self.segment_id, "vehicles": names,
                            "impacts": imp_cols, "passes": pas_cols, "coverage_from": self.coverage_from,
                            "alerts": self.alerts}, option=orjson.OPT_SERIALIZE_NUMPY)  # fmt: skip
        # a busy segment's coverage is tens of KB of JSON, rewritten with every pass: zstd
        # (level 1, ~4x smaller) above a few KB; small states stay plain JSON
        return _ZMAGIC + _ZC.compress(raw) if len(raw) > _ZSTD_ABOVE else raw

    @classmethod
    def from_bytes(cls, raw: bytes) -> SegmentState:
        if raw[: len(_ZMAGIC)] == _ZMAGIC:
            raw = _ZD.decompress(raw[len(_ZMAGIC) :])
        d = orjson.loads(raw)
        v = d.get("v")
        if v not in (1, 2, 3, 4, 5, 6, STATE_VERSION):
            raise ValueError(f"segment state version {v!r}, expected {STATE_VERSION}")
        if v >= 7:
            names = np.array(d["vehicles"], dtype=object)
            imp, pas = d["impacts"], d["passes"]
            imp[_VEH] = names[np.array(imp[_VEH], np.int64)]
            pas[_PVEH] = names[np.array(pas[_PVEH], np.int64)]
            return cls(segment_id=d["segment_id"], impacts=_columns(_IMPACT_COLUMNS, imp), alerts=d["alerts"],
                       passes=_columns(_PASS_COLUMNS, pas), coverage_from=d.get("coverage_from"))  # fmt: skip
        rows = d["impacts"]
        passes: list[list[Any]] = []
        if v >= 3:
            names = d["vehicles"]
            rows = [[*r[:_VEH], names[r[_VEH]], *r[_VEH + 1 :]] for r in rows]
            passes = [[*r[:_PVEH], names[r[_PVEH]], *r[_PVEH + 1 :]] for r in d["passes"]]
        # version 1 rows lack double_hit_m: read as a single hit (axle pairs are still seen
        # between two impacts of one pass); versions 1-2 have no passes: each impact then
        # counts as a pass of its own (hit rate 1), as before passes were known
        # rows before version 5 have no speed_dip, before version 6 no rise_mps2: unknown,
        # not counted in the dip fraction or the rise ratio
        impacts = [[*r, *[None] * (len(_IMPACT_COLUMNS) - len(r))] for r in rows]
        if v < 4:
            # severities before version 4 came from the band-passed signal, on another scale
            # than the whitened detector's: such impacts never make a weak cluster a pothole
            impacts = [[*r[:_SEV], 0.0, *r[_SEV + 1 :]] for r in impacts]
        # older versions kept rows by time only: the arrays' order is (time, vehicle)
        impacts.sort(key=lambda r: (r[0], r[_VEH]))
        passes.sort(key=lambda r: (r[0], r[_PVEH]))
        return cls(segment_id=d["segment_id"], impacts=_columns(_IMPACT_COLUMNS, list(zip(*impacts)) or None),
                   alerts=d["alerts"], passes=_columns(_PASS_COLUMNS, list(zip(*passes)) or None),
                   coverage_from=d.get("coverage_from"))  # fmt: skip


def impact_record(impact: Impact, *, vehicle: str, segment_id: str) -> PassImpact:
    """The record of an :class:`agents.potholes.Impact` from the streaming detector
    (``impact.t_s`` in epoch seconds)."""
    if not math.isfinite(impact.t_s):
        raise ValueError("impact.t_s must be the impact's time (epoch seconds)")
    sev = impact.severity if math.isfinite(impact.severity) else 1e6
    return PassImpact(
        vehicle=vehicle,
        segment_id=segment_id,
        time=datetime.fromtimestamp(round(impact.t_s, 6), tz=UTC),
        offset_m=round(max(0.0, impact.offset_m), 2),
        peak_mps2=round(impact.peak_mps2, 4),
        polarity=-1 if impact.polarity < 0 else 1,
        slowdown=round(min(max(impact.slowdown, 0.0), 1.0), 4),
        n_lobes=int(impact.n_lobes),
        n_peaks=max(1, int(impact.n_peaks)),
        speed_kmh=round(max(0.0, impact.speed_kmh), 2),
        severity=round(min(sev, 1e6), 3),
        duration_s=round(max(0.0, impact.duration_s if math.isfinite(impact.duration_s) else 0.0), 3),
        double_hit_m=round(impact.double_hit_m, 3) if math.isfinite(impact.double_hit_m) else None,
        kind_score=round(impact.kind_score if math.isfinite(impact.kind_score) else 0.5, 3),
        fs_hz=impact.fs_hz if math.isfinite(impact.fs_hz) and impact.fs_hz > 0 else 1.0,
        speed_dip=(round(min(impact.speed_dip, 100.0), 4)
                   if math.isfinite(impact.speed_dip) and impact.speed_dip >= 0 else None),
        rise_mps2=round(impact.rise_mps2, 4) if math.isfinite(impact.rise_mps2) else None,
    )  # fmt: skip


def _row(p: PassImpact) -> list[Any]:
    nan = math.nan
    return [p.time.timestamp(), p.offset_m, p.vehicle, p.polarity, p.slowdown, p.peak_mps2, p.n_lobes,
            p.speed_kmh, p.severity, p.fs_hz, nan if p.double_hit_m is None else p.double_hit_m,
            nan if p.speed_dip is None else p.speed_dip, nan if p.rise_mps2 is None else p.rise_mps2]  # fmt: skip


def _has_impact(imp: Columns, veh: str, t: float) -> bool:
    """Whether ``imp`` holds an impact with the natural key (vehicle, time rounded to the
    microsecond)."""
    ts, vs = imp["t"], imp["veh"]
    i = int(np.searchsorted(ts, t - 1e-5, side="left"))
    while i < ts.size and ts[i] <= t + 1e-5:
        if vs[i] == veh and round(float(ts[i]), 6) == t:
            return True
        i += 1
    return False


def _pass_row(p: SegmentPass) -> list[Any]:
    lo, hi = sorted((p.entry_offset_m, p.exit_offset_m))
    return [round(p.entry_time.timestamp(), 3), round(p.exit_time.timestamp(), 3), p.vehicle, round(lo, 1), round(hi, 1)]


def hit_rate(imp: Columns, members: np.ndarray, passes: Columns, position_m: float) -> tuple[int, int]:
    """(passes with an impact among ``imp``'s rows ``members``, passes over ``position_m``)
    of a segment whose passes are ``passes``.

    A pass is over the position when it drove between offsets around it; a pass with an
    impact in the cluster always counts. An impact is matched to the pass of its vehicle
    whose times contain it (within 1 s); impacts without one (pass not yet arrived, or
    forgotten) count as one pass per vehicle and 30 s, so that the result does not depend
    on the order in which a pass and its impacts arrive.
    """
    ts, vs = imp["t"][members].tolist(), imp["veh"][members].tolist()
    t0, t1 = passes["t0"], passes["t1"]
    # the passes that could hold a member (a few of a busy segment's thousands), in order
    near = np.flatnonzero((t0 - _MATCH_S <= max(ts)) & (t1 + _MATCH_S >= min(ts))) if ts else np.zeros(0, np.int64)
    by_veh: dict[Any, list[tuple[int, float, float]]] = {}
    for j, a, b, v in zip(near.tolist(), t0[near].tolist(), t1[near].tolist(), passes["veh"][near].tolist()):
        by_veh.setdefault(v, []).append((j, a, b))
    hit: set[int] = set()
    loose: dict[Any, list[float]] = {}
    for t, v in zip(ts, vs):
        own = [j for j, a, b in by_veh.get(v, ()) if a - _MATCH_S <= t <= b + _MATCH_S]
        if own:
            hit.add(own[0])
        else:
            loose.setdefault(v, []).append(t)
    n_loose = 0
    for tl in loose.values():
        tl.sort()
        n_loose += 1 + sum(1 for a, b in zip(tl, tl[1:]) if b - a > _SAME_PASS_S)
    over = (passes["lo"] <= position_m) & (position_m <= passes["hi"])
    n_over = int(np.count_nonzero(over)) + sum(1 for j in hit if not over[j])
    return len(hit) + n_loose, n_over + n_loose


def _impacts_of(imp: Columns, members: np.ndarray) -> list[Impact]:
    c = {k: imp[k][members].tolist() for k in _IMPACT_COLUMNS if k != "veh"}
    return [Impact(offset_m=off, peak_mps2=peak, polarity=pol, slowdown=slow, n_lobes=lobes, speed_kmh=speed,
                   severity=sev, t_s=t, fs_hz=fs, double_hit_m=dh, speed_dip=dip, rise_mps2=rise)
            for t, off, pol, slow, peak, lobes, speed, sev, fs, dh, dip, rise in zip(
                c["t"], c["off"], c["pol"], c["slow"], c["peak"], c["lobes"], c["speed"], c["sev"], c["fs"],
                c["dh"], c["dip"], c["rise"])]  # fmt: skip


def alert_id_of(segment_id: str, position_m: float, kind: str = "pothole") -> str:
    """Deterministic id of an alert: the segment and its position (to the metre)."""
    h = hashlib.sha256(f"{kind}|{segment_id}|{position_m:.0f}".encode()).hexdigest()[:24]
    return f"{kind}-{h}"


def handle_impacts(
    state: SegmentState | None,
    impacts: Sequence[PassImpact],
    now: datetime,
    *,
    segment_id: str | None = None,
    net: RoadNetwork | None = None,
    params: Stage2Params = Stage2Params(),
) -> tuple[SegmentState, list[RoadAlert]]:
    """:func:`handle_records` with impacts only."""
    return handle_records(state, impacts, (), now, segment_id=segment_id, net=net, params=params)


def handle_records(
    state: SegmentState | None,
    impacts: Sequence[PassImpact],
    passes: Sequence[SegmentPass],
    now: datetime,
    *,
    segment_id: str | None = None,
    net: RoadNetwork | None = None,
    params: Stage2Params = Stage2Params(),
) -> tuple[SegmentState, list[RoadAlert]]:
    """Fold a segment's new impacts and passes into its state; return the new or changed alerts.

    Parameters
    ----------
    state : SegmentState or None
        The segment's state (None: nothing known yet).
    impacts : sequence of PassImpact
        New impacts, all of this segment (any order; replays are ignored).
    passes : sequence of SegmentPass
        New passes, all of this segment (any order; replays are ignored): the coverage
        that gives each cluster its hit rate.
    now : datetime
        Current time, UTC-aware (for the TTL).
    segment_id : str, optional
        The key, when ``state`` is None and there is no record.
    net : RoadNetwork, optional
        To give alerts a latitude/longitude.

    Returns
    -------
    (state, alerts) : the new state and the alerts to publish (new: ``revision`` 0). Only a
    call with new impacts confirms anything (a pass alone never creates an alert).

    Raises
    ------
    ValueError
        If records belong to several segments, or ``now`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime (UTC)")
    segs = {p.segment_id for p in impacts} | {p.segment_id for p in passes}
    sid = state.segment_id if state is not None else (segment_id or (min(segs) if segs else None))
    if sid is None:
        raise ValueError("segment_id is needed when there is no state and no record")
    if segs - {sid}:
        raise ValueError(f"records of segments {sorted(segs - {sid})} given to the state of segment {sid!r}")
    # the arrays are never modified in place: the new state shares them until it replaces them
    st = (SegmentState(sid, state.impacts, {k: dict(v) for k, v in state.alerts.items()}, state.passes,
                       state.coverage_from)
          if state else SegmentState(sid))  # fmt: skip

    # 1. add, deduplicated on the natural keys; low-rate records are not evidence
    # (rows are sorted by time: a replay is found by bisection, not by a set of every key)
    seen: set[tuple[str, float]] = set()
    added: list[list[Any]] = []
    for p in impacts:
        if p.fs_hz < params.min_fs_hz:
            continue
        key = (p.vehicle, round(p.time.timestamp(), 6))
        if key not in seen and not _has_impact(st.impacts, *key):
            seen.add(key)
            added.append(_row(p))
    for r in added:
        i, _ = _place_of(st.impacts, r[0], r[2], "t")
        st.impacts = _insert(st.impacts, i, r, _IMPACT_COLUMNS)
    n_new = len(added)
    # passes stay sorted by (entry time, vehicle): a replay is found by bisection and a new
    # pass inserted in place (a busy segment holds up to max_passes of them)
    for q in passes:
        if q.fs_hz < params.min_fs_hz:
            continue
        row = _pass_row(q)
        i, known = _place_of(st.passes, row[0], row[2], "t0")
        if not known:
            st.passes = _insert(st.passes, i, row, _PASS_COLUMNS)
    # 2. expire, cap
    horizon = (now - timedelta(days=params.ttl_days)).timestamp()
    imp = st.impacts
    if _n(imp) and imp["t"][0] < horizon:  # sorted by time: the oldest first
        imp = _take(imp, imp["t"] >= horizon)
    if _n(imp) > params.max_impacts:
        imp = _take(imp, slice(-params.max_impacts, None))
    st.impacts = imp
    if _n(st.passes) and st.passes["t0"][0] < horizon:  # (exit >= entry: only old entries can expire)
        st.passes = _take(st.passes, st.passes["t1"] >= horizon)
    if _n(st.passes) > params.max_passes:
        st.passes = _take(st.passes, slice(-params.max_passes, None))
        st.coverage_from = max(st.coverage_from or -math.inf, float(st.passes["t0"][0]))
    if st.coverage_from is not None and st.coverage_from < horizon:
        st.coverage_from = None  # everything before it has expired anyway
    st.alerts = {k: a for k, a in st.alerts.items() if a["last_seen"] >= horizon}
    if not _n(imp) or n_new == 0:
        return st, []

    # 3. cluster along the segment (single linkage, gap_m) and confirm, each cluster with
    #    its lowest sample rate: only the clusters the new impacts joined, as nothing else
    #    about the others changed. A cluster longer than max_cluster_span_m is read in a
    #    window of that length around each new impact (on a busy rough road the random
    #    shocks of thousands of passes chain the whole segment into one cluster), from its
    #    max_cluster_impacts newest impacts: what a call costs no longer grows with the state
    n = _n(imp)
    order = np.argsort(imp["off"], kind="stable")  # rows by offset (ties by time, vehicle)
    pos = imp["off"][order]
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(pos) > params.gap_m) + 1, [n]])
    new_at = []  # where the new impacts are, by offset (those the cap dropped are not)
    for r in added:
        i, kept = _place_of(imp, r[0], r[2], "t")
        if kept:
            new_at.append(int(rank[i]))
    new_at.sort()
    groups: list[tuple[int, int]] = []
    for c in sorted(set(np.searchsorted(starts, new_at, side="right") - 1)):
        lo, hi = int(starts[c]), int(starts[c + 1])
        if pos[hi - 1] - pos[lo] <= params.max_cluster_span_m:
            groups.append((lo, hi))
            continue
        half = params.max_cluster_span_m / 2
        for i in new_at:
            if lo <= i < hi:
                w = (max(lo, int(np.searchsorted(pos, pos[i] - half, side="left"))),
                     min(hi, int(np.searchsorted(pos, pos[i] + half, side="right"))))
                if w not in groups:
                    groups.append(w)
    alerts: list[RoadAlert] = []
    for lo, hi in groups:
        members = order[lo:hi]  # row indices, by offset
        if len(set(imp["veh"][members].tolist())) < params.min_vehicles:
            continue
        capped = members.size > params.max_cluster_impacts
        if capped:  # the newest: rows are in (time, vehicle) order
            members = members[members >= np.sort(members)[-params.max_cluster_impacts]]
        vehicles = imp["veh"][members].tolist()
        # one cluster, however its newest impacts are spaced
        (cluster,) = cluster_impacts(_impacts_of(imp, members), [sid] * members.size, vehicles, gap_m=math.inf)
        found = confirm(
            [cluster], min_vehicles=params.min_vehicles, fs_hz=float(imp["fs"][members].min()),
            signature=params.signature, min_pothole_fraction=params.min_pothole_fraction,
            slowed_pothole_fraction=params.slowed_pothole_fraction,  # type: ignore[arg-type]
            min_peak_mps2=params.min_peak_mps2, min_axle_pair_fraction=params.min_axle_pair_fraction,
            min_fs_hz=params.min_fs_hz, weak_min_severity=params.weak_min_severity,
            weak_min_peak_mps2=params.weak_min_peak_mps2, dip_slowed_fraction=params.dip_slowed_fraction,
            weak_min_drop_pairs=params.weak_min_drop_pairs, max_rise_ratio=params.max_rise_ratio,
            slowed_max_rise_ratio=params.slowed_max_rise_ratio, level_rise_ratio=params.level_rise_ratio,
        )  # fmt: skip
        if not found or found[0].kind != "pothole":
            continue
        times = imp["t"][members]
        counted = members if st.coverage_from is None else members[times >= st.coverage_from]
        if counted.size:
            over = st.passes
            if capped:  # the passes of the impacts' period: older ones would count without their impacts
                over = _take(over, over["t1"] >= float(imp["t"][counted].min()) - _MATCH_S)
            n_hit, n_over = hit_rate(imp, counted, over, cluster.position_m)
            if n_hit < params.min_hit_rate * n_over:
                continue
        f = found[0]
        alert = _upsert_alert(st, sid, f.position_m, f.confidence, f.n_vehicles, f.n_impacts, float(times.min()),
                              float(times.max()), params)  # fmt: skip
        if alert is not None:
            alerts.append(_record(sid, alert, st.alerts[alert], net))
    return st, alerts


def _upsert_alert(
    st: SegmentState, sid: str, position: float, confidence: float, n_veh: int, n_imp: int,
    first: float, last: float, params: Stage2Params,
) -> str | None:  # fmt: skip
    """Create or update the alert of a confirmed cluster; its id if it must be published."""
    near = [(abs(a["position_m"] - position), k) for k, a in st.alerts.items() if abs(a["position_m"] - position) <= params.match_m]
    if near:
        _, key = min(near)
        a = st.alerts[key]
        changed = (a["n_vehicles"], a["n_impacts"], a["confidence"]) != (n_veh, n_imp, confidence)
        a.update(position_m=round(position, 2), last_seen=max(a["last_seen"], last), first_seen=min(a["first_seen"], first))
        if not changed:
            return None
        a.update(n_vehicles=n_veh, n_impacts=n_imp, confidence=confidence, revision=a["revision"] + 1)
        return key
    key = alert_id_of(sid, position)
    k = 1
    while key in st.alerts:
        key = alert_id_of(sid, position + 1000.0 * k)
        k += 1
    st.alerts[key] = {"position_m": round(position, 2), "first_seen": first, "last_seen": last,
                      "n_vehicles": n_veh, "n_impacts": n_imp, "confidence": confidence, "revision": 0}  # fmt: skip
    return key


def _record(sid: str, alert_id: str, a: dict[str, Any], net: RoadNetwork | None) -> RoadAlert:
    lat = lon = None
    if net is not None:
        try:
            i = net.index_of(sid)
        except (KeyError, ValueError):
            i = None
        if i is not None:
            pos = min(max(float(a["position_m"]), 0.0), float(net.length_m[i]))
            x, y = net.point_at_wgs84(np.array([i]), np.array([pos]))
            lon, lat = round(float(x[0]), 7), round(float(y[0]), 7)
    return RoadAlert(
        alert_id=alert_id,
        segment_id=sid,
        kind="pothole",
        position_m=max(0.0, float(a["position_m"])),
        lat_deg=lat,
        lon_deg=lon,
        confidence=float(min(max(a["confidence"], 0.0), 1.0)),
        n_vehicles=int(a["n_vehicles"]),
        n_impacts=int(a["n_impacts"]),
        first_seen=datetime.fromtimestamp(a["first_seen"], tz=UTC),
        last_seen=datetime.fromtimestamp(a["last_seen"], tz=UTC),
        revision=int(a["revision"]),
    )
