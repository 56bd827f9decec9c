"""The true road surface of the whole network: ISO 8608 profiles, potholes, humps, rails.

:class:`RoadSurface` gives every directed segment of a :class:`~roadnet.RoadNetwork` a
deterministic true longitudinal profile of its wheel path (:mod:`simulator.profiles`),
seeded by the scenario seed and the segment id, so that every pass over a segment meets
*the same road*:

* roughness: ``Gd(n0)`` from :func:`simulator.profiles.assign_roughness` (one ISO class per
  OSM way, both directions and all pieces; a few bad stretches two classes worse);
* potholes (pavement defects, counted in the IRI): Poisson per km by ISO class
  (:data:`POTHOLES_PER_KM`), depth 2-10 cm, length 0.2-1.5 m, per direction (a hole is in
  one lane);
* designed features (excluded from the IRI, like profilers' "events"): speed humps and
  cushions on residential and living streets (:data:`BUMP_PROB` per street), rail
  crossings on a few other streets (:data:`RAIL_PROB`); both directions of a two-way
  street get the same feature at the mirrored place.

Profiles are built lazily, only for segments that vehicles drive, and cached. The driven
profile of a segment is *pinned*: a straight line is subtracted so that it is 0 at both
ends, so consecutive segments join without a step (adding a straight line leaves the
ASTM IRI unchanged, :func:`agents.iri.iri`). The true IRI is that of the pavement profile
(roughness + potholes) over the segment; segments shorter than :data:`MIN_IRI_LENGTH_M`
get the IRI of the first ``MIN_IRI_LENGTH_M`` of the same random road (the ASTM
computation needs an 11 m run-in).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from roadnet import RoadNetwork
from simulator.profiles import (
    DX_M,
    Feature,
    SegmentTruth,
    assign_roughness,
    draw_features,
    iso_class_of,
    pothole_contrast,
    segment_rng,
    segment_truth,
)

__all__ = [
    "RoadSurface",
    "road_surface",
    "POTHOLES_PER_KM",
    "BUMP_PROB",
    "RAIL_PROB",
    "MIN_IRI_LENGTH_M",
    "FEATURE_MARGIN_M",
]

#: Mean potholes per km of lane, by ISO 8608 class of the segment.
POTHOLES_PER_KM = {"A": 0.0, "B": 1.5, "C": 5.0, "D": 12.0, "E": 20.0}
#: Probability that a residential / living street (>= 40 m) has a speed hump or cushion.
BUMP_PROB = 0.15
#: Probability that another street (>= 40 m, not an arterial) has a rail crossing.
RAIL_PROB = 0.02
MIN_IRI_LENGTH_M = 15.0
FEATURE_MARGIN_M = 15.0  #: humps and rails are at least this far from a segment's ends, m
POTHOLE_MARGIN_M = 5.0  #: potholes: at least this far from the ends, m
_BUMP_STREETS = ("residential", "living_street")
_RAIL_STREETS = ("tertiary", "unclassified", "secondary")

Table = dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class _Driven:
    """A segment's pinned profile on [0, length): grid, pavement and designed features."""

    x_m: np.ndarray
    z_pavement_m: np.ndarray
    z_designed_m: np.ndarray


class RoadSurface:
    """The true surface of every segment of ``net`` (lazy, cached, deterministic).

    Parameters
    ----------
    net : RoadNetwork
    seed : int
        Scenario seed: same seed, same roads (whatever the vehicles do).
    features : bool
        Draw potholes, humps and rail crossings (False: roughness only).
    dx_m : float
        Profile step, m.

    Attributes
    ----------
    gd0_m3 : (n,) Gd(n0) of every segment, m^3; ``iso_class`` its letter
    stretches : per segment, the bad stretches (start_m, end_m, extra Gd(n0))
    """

    def __init__(self, net: RoadNetwork, *, seed: int, features: bool = True, dx_m: float = DX_M) -> None:
        self.net = net
        self.seed = int(seed)
        self.features = bool(features)
        self.dx_m = float(dx_m)
        self.gd0_m3, self.stretches = assign_roughness(net.highway, net.osm_way_id, net.length_m, seed=self.seed)
        self.iso_class = np.asarray(iso_class_of(self.gd0_m3), dtype=object)
        self._truth: dict[int, SegmentTruth] = {}
        self._driven: dict[int, _Driven] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ features
    def _designed(self, seg: int) -> list[Feature]:
        """Humps and rails of a street, drawn once per two-way pair, mirrored on the twin."""
        net = self.net
        twin = int(net.reverse[seg])
        key = seg if twin < 0 else min(seg, twin)
        length = float(net.length_m[key])
        if length < 40.0:
            return []
        hw = str(net.highway[key])
        rng = segment_rng(self.seed, f"designed:{net.segment_id[key]}", 3)
        u_bump, u_rail = rng.random(), rng.random()
        n_bump = int(hw in _BUMP_STREETS and u_bump < BUMP_PROB)
        n_rail = int(hw in _RAIL_STREETS and u_rail < RAIL_PROB)
        if n_bump + n_rail == 0:
            return []
        feats = draw_features(length, rng, n_speed_bumps=n_bump, n_rail_crossings=n_rail, margin_m=FEATURE_MARGIN_M)
        if key == seg:
            return feats
        own = float(net.length_m[seg])
        return [Feature(f.kind, own - f.position_m, f.length_m, f.height_m) for f in feats
                if FEATURE_MARGIN_M <= own - f.position_m <= own - FEATURE_MARGIN_M]  # fmt: skip

    def features_of(self, seg: int) -> list[Feature]:
        """All features of one directed segment, by position (segment coordinates, m)."""
        if not self.features:
            return []
        designed = self._designed(seg)
        length = float(self.net.length_m[seg])
        rate = POTHOLES_PER_KM[str(self.iso_class[seg])]
        rng = segment_rng(self.seed, f"potholes:{self.net.segment_id[seg]}", 4)
        if length < 2 * POTHOLE_MARGIN_M + 2.0:
            return designed
        holes = draw_features(length, rng, pothole_rate_per_km=rate, margin_m=POTHOLE_MARGIN_M)
        holes = [h for h in holes if all(abs(h.position_m - d.position_m) >= 25.0 for d in designed)]
        return sorted(designed + holes, key=lambda f: f.position_m)

    # ------------------------------------------------------------------ profiles
    def truth(self, seg: int) -> SegmentTruth:
        """True profile, features and IRI of one segment (cached)."""
        seg = int(seg)
        t = self._truth.get(seg)
        if t is None:
            length = float(self.net.length_m[seg])
            t = segment_truth(
                str(self.net.segment_id[seg]), max(length, MIN_IRI_LENGTH_M), float(self.gd0_m3[seg]),
                seed=self.seed, features=self.features_of(seg), bad_stretches=self.stretches[seg],
                dx_m=self.dx_m, lead_m=0.0, tail_m=0.0,
            )  # fmt: skip
            with self._lock:
                self._truth[seg] = t
        return t

    def _pinned(self, seg: int) -> _Driven:
        d = self._driven.get(int(seg))
        if d is None:
            t = self.truth(seg)
            length = float(self.net.length_m[seg])
            n = max(2, int(np.ceil(length / self.dx_m)))
            x = t.x_m[:n]
            zp, zd = t.z_pavement_m[:n], t.z_designed_m[:n]
            end = float(np.interp(length, t.x_m, t.z_pavement_m))
            ramp = zp[0] + (end - zp[0]) * x / max(length, 1e-9)
            d = _Driven(x, zp - ramp, zd)
            with self._lock:
                self._driven[int(seg)] = d
        return d

    def route_profile(self, segments: np.ndarray, seg_start_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The profile a vehicle drives along a route, on a uniform grid from 0.

        Parameters
        ----------
        segments : (m,) segment indices in driving order
        seg_start_m : (m + 1,) route distance where each segment starts (last: the total)

        Returns
        -------
        x_m, z_m : (k,) route distance (step ``dx_m``, covering [0, total]) and elevation
            (pavement + designed features), m; continuous at the junctions.
        """
        xs, zs = [], []
        for seg, s0, s1 in zip(segments, seg_start_m[:-1], seg_start_m[1:]):
            d = self._pinned(int(seg))
            keep = d.x_m < (s1 - s0)
            xs.append(s0 + d.x_m[keep])
            zs.append((d.z_pavement_m + d.z_designed_m)[keep])
        total = float(seg_start_m[-1])
        xs.append(np.array([total]))
        zs.append(np.array([0.0]))
        xc, zc = np.concatenate(xs), np.concatenate(zs)
        grid = np.arange(0.0, total + self.dx_m, self.dx_m)
        return grid, np.interp(grid, xc, zc)

    # ------------------------------------------------------------------ truth tables
    def iri_m_per_km(self, segments: np.ndarray | None = None) -> np.ndarray:
        """(n,) true IRI of the given segments (m/km); NaN for the others."""
        out = np.full(len(self.net), np.nan)
        segs = np.unique(np.asarray(segments, np.int64)) if segments is not None else np.arange(len(self.net))
        for s in segs:
            out[s] = round(self.truth(int(s)).iri_m_per_km, 4)
        return out

    def feature_table(self, segments: np.ndarray) -> Table:
        """Features of the given segments: ``segment, segment_id, offset_m, kind, height_m,
        length_m, detail, contrast`` (kind 'pothole', 'bump' (humps and cushions) or 'rail';
        contrast: :func:`simulator.profiles.pothole_contrast`, NaN for designed features)."""
        rows = []
        for s in np.unique(np.asarray(segments, np.int64)):
            t = self.truth(int(s))
            for f, c in zip(t.features, pothole_contrast(t)):
                rows.append((int(s), f.position_m, _KIND[f.kind], f.height_m, f.length_m, f.kind, c))
        seg = np.array([r[0] for r in rows], np.int64)
        return {
            "segment": seg,
            "segment_id": self.net.segment_id[seg] if len(seg) else np.zeros(0, object),
            "offset_m": np.array([r[1] for r in rows], float),
            "kind": np.array([r[2] for r in rows], object),
            "height_m": np.array([r[3] for r in rows], float),
            "length_m": np.array([r[4] for r in rows], float),
            "detail": np.array([r[5] for r in rows], object),
            "contrast": np.array([r[6] for r in rows], float),
        }


_KIND = {"pothole": "pothole", "speed_bump": "bump", "speed_cushion": "bump", "rail_crossing": "rail"}
_CACHE: OrderedDict[tuple, RoadSurface] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def road_surface(net: RoadNetwork, *, seed: int, features: bool = True) -> RoadSurface:
    """A :class:`RoadSurface`, shared by calls with the same network, seed and options
    (a few kept), so that repeated simulations reuse the profiles already built."""
    key = (id(net), len(net), net.name, int(seed), bool(features))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit.net is net:
            _CACHE.move_to_end(key)
            return hit
    surf = RoadSurface(net, seed=seed, features=features)
    with _CACHE_LOCK:
        _CACHE[key] = surf
        while len(_CACHE) > 4:
            _CACHE.popitem(last=False)
    return surf



def slow_for_features(
    u_sq: np.ndarray,
    s_m: np.ndarray,
    segments: np.ndarray,
    seg_start_m: np.ndarray,
    surface: RoadSurface,
    rng: np.random.Generator,
) -> np.ndarray:
    """Cap a route's target speed (squared, (m/s)^2 on the grid ``s_m``) where drivers slow
    down: 15-30 km/h over humps and cushions, 55-85 % of the speed at rail crossings. The
    braking before and the acceleration after come from the usual envelopes."""
    u = np.asarray(u_sq, float).copy()
    if not surface.features or len(s_m) < 2:
        return u
    for seg, s0 in zip(segments, seg_start_m[:-1]):
        for f in surface.truth(int(seg)).features:
            if f.kind == "pothole":
                continue
            a, b = np.searchsorted(s_m, [s0 + f.position_m - f.length_m / 2 - 1.0, s0 + f.position_m + f.length_m / 2 + 1.0])
            if b <= a:
                continue
            if f.kind == "rail_crossing":
                cap = float(np.min(u[a:b])) * rng.uniform(0.55, 0.85) ** 2
            else:
                cap = (rng.uniform(15.0, 30.0) / 3.6) ** 2
            u[a:b] = np.minimum(u[a:b], cap)
    return u
