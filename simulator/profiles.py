"""Ground-truth road profiles: ISO 8608 roughness, potholes, speed bumps and rail crossings.

Each segment gets a true longitudinal profile of its wheel path:

* **random roughness**, ISO 8608: one-sided displacement PSD
  ``Gd(n) = Gd(n0) (n / n0)^-2`` with ``n0 = 0.1`` cycle/m, synthesised as a sum of
  cosines with random phases (ISO 8608 annex, via one inverse FFT) between 0.01 and
  10 cycle/m. Class centres ``Gd(n0)`` = 16, 64, 256, 1024, 4096 x 1e-6 m^3 (A-E); each
  class spans a factor 4 (A < 32e-6 <= B < 128e-6 ...).
* **pavement defects**: potholes, flat-bottomed with sharp edges, depth 2-10 cm, length
  0.2-1.5 m;
* **designed features**, which are *not* road roughness: speed bumps (French "dos d'âne",
  circular 3-4 m, 7-10 cm; short cushions 0.5-2 m, 5-7 cm with a flat top) and rail
  crossings (two rails ~1.435 m apart, each a narrow 1-2.5 cm ridge with a flangeway dip).

The **true IRI** of a segment is the ASTM E1926 IRI (:func:`agents.iri.iri`) of its
*pavement* profile (roughness + potholes). Designed features are left out, as profiling
practice does for rail crossings, bridges joints and humps ("events" excluded from IRI
reports): they are not pavement condition. The vehicles drive the full profile.

Along the network (:func:`assign_roughness`), the class follows road class and a hidden
"age" per OSM way: both directions and all pieces of one way share the draw, with a small
per-segment jitter inside the class, plus a few bad stretches. Everything is deterministic
given the seed (numpy ``Generator`` seeded from the seed and a stable hash of the segment).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from agents.iri import iri

__all__ = [
    "ISO_CLASSES",
    "ISO_GD0_M3",
    "N0_CYCLES_PER_M",
    "Feature",
    "SegmentTruth",
    "iso_class_of",
    "iso8608_profile",
    "feature_profile",
    "draw_features",
    "segment_truth",
    "pothole_contrast",
    "assign_roughness",
    "segment_rng",
]

ISO_CLASSES = ("A", "B", "C", "D", "E")
#: Class centres Gd(n0), m^3.
ISO_GD0_M3 = {"A": 16e-6, "B": 64e-6, "C": 256e-6, "D": 1024e-6, "E": 4096e-6}
N0_CYCLES_PER_M = 0.1
N_MIN, N_MAX = 0.01, 10.0  # synthesised band, cycle/m
DX_M = 0.025  # default profile step, m
RAIL_GAUGE_M = 1.435

FeatureKind = Literal["pothole", "speed_bump", "speed_cushion", "rail_crossing"]


def iso_class_of(gd0_m3: np.ndarray | float) -> np.ndarray:
    """ISO 8608 class letter of Gd(n0) (m^3): bounds at the geometric midpoints (x2)."""
    g = np.asarray(gd0_m3, float)
    edges = np.array([32e-6, 128e-6, 512e-6, 2048e-6])
    out = np.asarray(ISO_CLASSES, dtype=object)[np.searchsorted(edges, g, side="right")]
    return out if g.ndim else str(out)


def segment_rng(seed: int, key: str | int, stream: int = 0) -> np.random.Generator:
    """A Generator for one (seed, segment, stream), stable across runs and processes."""
    h = zlib.crc32(str(key).encode())
    return np.random.default_rng([int(seed), h, int(stream)])


def iso8608_profile(
    length_m: float,
    gd0_m3: float,
    rng: np.random.Generator,
    *,
    dx_m: float = DX_M,
    n_min: float = N_MIN,
    n_max: float = N_MAX,
) -> np.ndarray:
    """Random ISO 8608 profile (sum of cosines with random phases, one inverse FFT).

    Parameters
    ----------
    length_m : float
        Profile length, m (rounded up to a whole number of steps).
    gd0_m3 : float
        Displacement PSD at n0 = 0.1 cycle/m, m^3 (class centres in :data:`ISO_GD0_M3`).
    rng : numpy.random.Generator
    dx_m : float, optional
        Spatial step, m. Default 0.025.
    n_min, n_max : float, optional
        Synthesised band, cycle/m. Default 0.01-10.

    Returns
    -------
    z_m : (ceil(length/dx) + 1,) ndarray
        Elevation, m, zero mean. The synthesis is periodic over the padded length (at least
        1/n_min), so any window has the target spectrum.
    """
    if not length_m > 0 or not dx_m > 0 or not gd0_m3 >= 0:
        raise ValueError(f"need length_m > 0, dx_m > 0, gd0_m3 >= 0; got {length_m=}, {dx_m=}, {gd0_m3=}")
    n_out = int(np.ceil(length_m / dx_m)) + 1
    n_fft = int(2 ** np.ceil(np.log2(max(n_out, int(2 / (n_min * dx_m))))))
    dn = 1.0 / (n_fft * dx_m)
    n = np.arange(n_fft // 2 + 1) * dn
    band = (n >= n_min) & (n <= min(n_max, 0.5 / dx_m))
    gd = np.zeros_like(n)
    gd[band] = gd0_m3 * (n[band] / N0_CYCLES_PER_M) ** -2
    amp = np.sqrt(2.0 * gd * dn)  # cosine amplitude per bin
    phase = rng.uniform(0.0, 2 * np.pi, n.size)
    spec = 0.5 * amp * np.exp(1j * phase) * n_fft
    z = np.fft.irfft(spec, n=n_fft)
    return z[:n_out]


@dataclass(frozen=True)
class Feature:
    """A discrete feature of the profile.

    Attributes
    ----------
    kind : 'pothole' | 'speed_bump' | 'speed_cushion' | 'rail_crossing'
    position_m : centre, metres along the segment
    length_m : along-road extent, m (rail crossing: rail spacing)
    height_m : peak elevation change, m (negative = depth of a pothole)
    """

    kind: FeatureKind
    position_m: float
    length_m: float
    height_m: float

    @property
    def is_pavement_defect(self) -> bool:
        return self.kind == "pothole"


def _shape(x: np.ndarray, f: Feature) -> np.ndarray:
    u = x - f.position_m
    if f.kind == "pothole":
        edge = min(0.04, f.length_m / 5)  # nearly vertical, slightly broken edges
        inner = f.length_m / 2 - edge
        t = np.clip((f.length_m / 2 - np.abs(u)) / edge, 0.0, 1.0)
        return f.height_m * np.where(np.abs(u) <= inner, 1.0, t)
    if f.kind == "speed_bump":  # circular-arc hump (parabola), zero at both ends
        return f.height_m * np.clip(1.0 - (2 * u / f.length_m) ** 2, 0.0, None)
    if f.kind == "speed_cushion":  # trapezoid: ramps of 1/4 of the length each side
        ramp = f.length_m / 4
        return f.height_m * np.clip((f.length_m / 2 - np.abs(u)) / ramp, 0.0, 1.0)
    if f.kind == "rail_crossing":  # two rails: a 0.3 m ridge with a 7 cm flangeway dip
        out = np.zeros_like(x)
        for c in (-f.length_m / 2, f.length_m / 2):
            r = u - c
            out += f.height_m * np.clip(1.0 - np.abs(r) / 0.15, 0.0, None)
            out -= 0.03 * (np.abs(r + 0.05) < 0.035)
        return out
    raise ValueError(f"unknown feature kind {f.kind!r}")


def feature_profile(x_m: np.ndarray, features: Sequence[Feature]) -> tuple[np.ndarray, np.ndarray]:
    """Elevation added by features: (pavement defects, designed features), metres."""
    x = np.asarray(x_m, float)
    defects = np.zeros_like(x)
    designed = np.zeros_like(x)
    for f in features:
        lo, hi = np.searchsorted(x, [f.position_m - f.length_m - 0.5, f.position_m + f.length_m + 0.5])
        target = defects if f.is_pavement_defect else designed
        target[lo:hi] += _shape(x[lo:hi], f)
    return defects, designed


def draw_features(
    length_m: float,
    rng: np.random.Generator,
    *,
    pothole_rate_per_km: float = 0.0,
    n_speed_bumps: int = 0,
    n_rail_crossings: int = 0,
    margin_m: float = 15.0,
    min_gap_m: float = 25.0,
) -> list[Feature]:
    """Random features on a segment, at least ``min_gap_m`` apart and ``margin_m`` from ends.

    Pothole count is Poisson(rate x length); depth U(2, 10) cm, length U(0.2, 1.5) m. Speed
    bumps: 2/3 circular humps (3-4 m, 7-10 cm), 1/3 cushions (0.5-2 m, 5-7 cm). Rails:
    1-2.5 cm ridges ``RAIL_GAUGE_M`` apart.
    """
    kinds: list[str] = (
        ["speed_bump"] * n_speed_bumps
        + ["rail_crossing"] * n_rail_crossings
        + ["pothole"] * int(rng.poisson(pothole_rate_per_km * length_m / 1000.0))
    )
    out: list[Feature] = []
    placed: list[float] = []
    for kind in kinds:
        for _ in range(50):
            pos = float(rng.uniform(margin_m, length_m - margin_m))
            if all(abs(pos - p) >= min_gap_m for p in placed):
                break
        else:
            continue
        placed.append(pos)
        if kind == "pothole":
            f = Feature("pothole", pos, float(rng.uniform(0.2, 1.5)), -float(rng.uniform(0.02, 0.10)))
        elif kind == "speed_bump":
            if rng.random() < 2 / 3:
                f = Feature("speed_bump", pos, float(rng.uniform(3.0, 4.0)), float(rng.uniform(0.07, 0.10)))
            else:
                f = Feature("speed_cushion", pos, float(rng.uniform(0.5, 2.0)), float(rng.uniform(0.05, 0.07)))
        else:
            f = Feature("rail_crossing", pos, RAIL_GAUGE_M, float(rng.uniform(0.01, 0.025)))
        out.append(f)
    return sorted(out, key=lambda f: f.position_m)


@dataclass(frozen=True, eq=False)
class SegmentTruth:
    """The true wheel-path profile of one segment and its features.

    Attributes
    ----------
    x_m : (n,) distance along the segment, m; starts at ``-lead_m`` (approach) and ends at
        ``length_m + tail_m`` so that vehicles are in steady state when they enter
    z_pavement_m : (n,) roughness + potholes, m
    z_designed_m : (n,) speed bumps + rail crossings, m
    features : list of Feature (positions in segment coordinates)
    gd0_m3 : Gd(n0) of the roughness, m^3; ``iso_class`` its letter
    iri_m_per_km : true IRI of the pavement on [0, length_m]
    """

    segment: str
    length_m: float
    dx_m: float
    x_m: np.ndarray
    z_pavement_m: np.ndarray
    z_designed_m: np.ndarray
    features: list[Feature] = field(default_factory=list)
    gd0_m3: float = 0.0
    iri_m_per_km: float = 0.0

    @property
    def z_m(self) -> np.ndarray:
        """What the tyre meets: pavement + designed features, m."""
        return self.z_pavement_m + self.z_designed_m

    @property
    def iso_class(self) -> str:
        return str(iso_class_of(self.gd0_m3))


def segment_truth(
    segment: str | int,
    length_m: float,
    gd0_m3: float,
    *,
    seed: int,
    features: Sequence[Feature] | None = None,
    bad_stretches: Sequence[tuple[float, float, float]] = (),
    dx_m: float = DX_M,
    lead_m: float = 60.0,
    tail_m: float = 20.0,
) -> SegmentTruth:
    """True profile, features and IRI of one segment (deterministic in seed and segment).

    Parameters
    ----------
    segment : str or int
        Segment identifier (hashed into the random stream).
    length_m : float
        Segment length, m (>= 12 m for an IRI).
    gd0_m3 : float
        Roughness Gd(n0), m^3.
    seed : int
        Scenario seed.
    features : sequence of Feature, optional
        Potholes / bumps / rails in segment coordinates (see :func:`draw_features`).
    bad_stretches : sequence of (start_m, end_m, gd0_extra_m3)
        Extra independent roughness added on a stretch (5 m cosine tapers).
    dx_m, lead_m, tail_m : float
        Profile step and the approach/exit lengths, m.
    """
    rng = segment_rng(seed, segment, 0)
    total = length_m + lead_m + tail_m
    z = iso8608_profile(total, gd0_m3, rng, dx_m=dx_m)
    x = np.arange(z.size) * dx_m - lead_m
    for start, end, extra in bad_stretches:
        w = np.clip(np.minimum(x - start, end - x) / 5.0, 0.0, 1.0)
        w = 0.5 - 0.5 * np.cos(np.pi * w)
        z = z + w * iso8608_profile(total, extra, rng, dx_m=dx_m)
    feats = list(features or [])
    defects, designed = feature_profile(x, feats)
    zp = z + defects
    inside = (x >= -1e-9) & (x <= length_m + 1e-9)
    true_iri = float(iri(zp[inside], dx_m)) if inside.sum() * dx_m > 12.0 else float("nan")
    return SegmentTruth(
        segment=str(segment),
        length_m=float(length_m),
        dx_m=dx_m,
        x_m=x,
        z_pavement_m=zp,
        z_designed_m=designed,
        features=feats,
        gd0_m3=float(gd0_m3),
        iri_m_per_km=true_iri,
    )



TYRE_RADIUS_M = 0.33  #: a typical car tyre (the vehicle families draw 0.30-0.36 m)


def pothole_contrast(
    truth: SegmentTruth, *, tyre_radius_m: float = TYRE_RADIUS_M, scale_m: float = 1.0, window_m: float = 10.0
) -> np.ndarray:
    """How far each pothole of a segment stands out of its own road (ground truth).

    The hole's *effective* depth, what a rigid tyre of radius ``R`` reaches (the full
    depth ``d`` when the hole is longer than the chord ``2 sqrt(2 R d)``, else the sagitta
    ``R - sqrt(R^2 - (L/2)^2)``: a short hole is bridged), over the RMS of the segment's
    pavement profile *without its potholes* after a ``scale_m`` moving-average high-pass,
    within ``window_m`` either side of the hole. A 3 cm hole on a smooth street has a
    contrast of 30 or more; in a destroyed stretch (class D-E) the road's own unevenness is
    the size of the hole and the contrast falls under 10.

    Parameters
    ----------
    truth : SegmentTruth
    tyre_radius_m, scale_m, window_m : float
        Tyre radius, high-pass scale and half-window, m.

    Returns
    -------
    (len(truth.features),) float64: the contrast of each pothole, NaN for designed features.
    """
    x = truth.x_m
    defects, _ = feature_profile(x, truth.features)
    road = truth.z_pavement_m - defects
    w = max(1, int(round(scale_m / truth.dx_m)))
    c = np.concatenate([[0.0], np.cumsum(road)])
    lo = np.clip(np.arange(road.size) - w // 2, 0, road.size)
    hi = np.clip(lo + w, 0, road.size)
    hp = road - (c[hi] - c[lo]) / np.maximum(hi - lo, 1)
    out = np.full(len(truth.features), np.nan)
    r = float(tyre_radius_m)
    for k, f in enumerate(truth.features):
        if not f.is_pavement_defect:
            continue
        d, half = abs(f.height_m), f.length_m / 2
        d_eff = d if half >= np.sqrt(2 * r * d) else r - np.sqrt(r * r - min(half, r) ** 2)
        near = np.abs(x - f.position_m) <= window_m
        out[k] = d_eff / max(float(np.sqrt(np.mean(hp[near] ** 2))), 1e-9)
    return out

#: Class probabilities (A-E) by OSM highway class: arterials are maintained better. An
#: urban network (SQY is a new town): mostly A-B, some C, a tenth D on minor streets and a
#: few E (destroyed surface).
_CLASS_PROBS = {
    "motorway": (0.60, 0.35, 0.05, 0.0, 0.0),
    "trunk": (0.55, 0.38, 0.07, 0.0, 0.0),
    "primary": (0.45, 0.40, 0.13, 0.02, 0.0),
    "secondary": (0.40, 0.40, 0.16, 0.04, 0.0),
    "tertiary": (0.32, 0.40, 0.20, 0.07, 0.01),
    "residential": (0.25, 0.38, 0.24, 0.10, 0.03),
    "unclassified": (0.20, 0.35, 0.27, 0.13, 0.05),
    "living_street": (0.25, 0.38, 0.24, 0.10, 0.03),
}
#: Spread of Gd(n0) around the class centre (log-uniform, before the per-segment jitter):
#: class A has no lower bound, so it reaches down to new asphalt.
_CLASS_SPREAD = {"A": (0.3, 1.4), "B": (0.7, 1.4), "C": (0.7, 1.4), "D": (0.7, 1.4), "E": (0.7, 1.4)}
_DEFAULT_PROBS = _CLASS_PROBS["residential"]


def assign_roughness(
    highway: Sequence[str],
    osm_way_id: Sequence[int],
    length_m: Sequence[float],
    *,
    seed: int,
    bad_stretch_prob: float = 0.03,
) -> tuple[np.ndarray, list[list[tuple[float, float, float]]]]:
    """Gd(n0) per segment and its bad stretches, plausible along the network.

    One draw per OSM way (both directions, all pieces share the class): the class is drawn
    from the highway-class probabilities, then ``Gd(n0)`` is log-uniform in the central
    half of the class in log terms (x0.7 .. x1.4 of the centre; class A x0.3 .. x1.4),
    with a per-segment jitter of +-15 %. A fraction ``bad_stretch_prob`` of segments get one bad stretch (20-80 m,
    two classes worse) at a random place.

    Returns
    -------
    gd0_m3 : (n,) float, m^3
    bad_stretches : list (per segment) of (start_m, end_m, gd0_extra_m3)
    """
    hw = list(highway)
    ways = np.asarray(osm_way_id)
    lengths = np.asarray(length_m, float)
    n = len(hw)
    gd0 = np.empty(n)
    stretches: list[list[tuple[float, float, float]]] = [[] for _ in range(n)]
    centres = np.array([ISO_GD0_M3[c] for c in ISO_CLASSES])
    for i in range(n):
        key = f"way:{int(ways[i])}" if ways[i] >= 0 else f"seg:{i}"
        rng_way = segment_rng(seed, key, 1)
        probs = np.asarray(_CLASS_PROBS.get(str(hw[i]).replace("_link", ""), _DEFAULT_PROBS))
        k = int(rng_way.choice(5, p=probs / probs.sum()))
        lo, hi = _CLASS_SPREAD[ISO_CLASSES[k]]
        base = centres[k] * np.exp(rng_way.uniform(np.log(lo), np.log(hi)))
        rng_seg = segment_rng(seed, f"seg:{i}", 2)
        gd0[i] = base * np.exp(rng_seg.uniform(np.log(0.85), np.log(1.15)))
        if rng_seg.random() < bad_stretch_prob and lengths[i] > 60:
            span = float(rng_seg.uniform(20, min(80, lengths[i] - 20)))
            start = float(rng_seg.uniform(0, lengths[i] - span))
            stretches[i].append((start, start + span, 15.0 * gd0[i]))
    return gd0, stretches
