"""Potholes from vertical acceleration: impacts per pass, clusters across vehicles, confirmation.

1. :func:`detect_impacts` (one pass): the vertical acceleration is band-passed (2-40 Hz,
   causal Butterworth; the body's own 1-2 Hz motion and gravity are removed, the wheel-hop
   band kept). Peaks of ``|y|`` above ``max(k * sigma, floor)`` (``sigma`` = robust scale
   of the pass, 1.4826 MAD, so a rough road needs a bigger hit) within ``group_m`` of each
   other form one impact. Each impact is placed at the distance along the segment where it
   starts and described by:

   * ``polarity``: sign of its first lobe above half its peak. A pothole drops the wheel
     first (tyre force falls, the body accelerates *down*, then the far edge kicks it
     up): ``-1``. A speed bump, cushion or rail lifts the wheel first: ``+1``;
   * ``slowdown``: speed at the impact / highest speed in the 60 m before it. Drivers brake
     for speed bumps (and somewhat for rail crossings), not for potholes they did not see;
   * ``peak_mps2`` and ``n_lobes`` (significant lobes; a rail crossing is two hits
     ~1.4 m apart, so more lobes in the group).

2. :func:`cluster_impacts`: 1-D clustering along each segment: impacts sorted by position,
   a new cluster whenever the gap to the previous one exceeds ``gap_m`` (5 m).

3. :func:`confirm`: a cluster is a *pothole* when at least ``min_vehicles`` (3) distinct
   vehicles hit it, most hits have the pothole signature (``pothole_fraction`` >= 0.6,
   down-first and no slowdown) and drivers do not consistently slow down there (median
   slowdown >= 0.8). Its position is the median impact position, its confidence grows with
   the number of vehicles and the agreement of their signatures. Clusters with the
   up-first / slow-down signature are reported as ``bump`` (speed bump or rail crossing)
   so the caller can see them, never as potholes.

Impacts are a per-pass computation (the whole pass at once); the pass layer buffers the
samples of a pass anyway for roughness and offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
from scipy import signal

__all__ = [
    "Impact",
    "Cluster",
    "ConfirmedFeature",
    "detect_impacts",
    "cluster_impacts",
    "confirm",
    "BAND_HZ",
]

BAND_HZ = (2.0, 40.0)  #: impact band, Hz (top capped at 0.45 fs)
K_SIGMA = 4.0  #: threshold, multiples of the pass's robust scale
FLOOR_MPS2 = 1.0  #: absolute threshold floor, m/s^2
GROUP_M = 2.5  #: peaks closer than this (m) belong to one impact
LOOKBACK_M = 60.0  #: distance over which the approach speed is taken, m
LOBE_FRACTION = 0.35  #: a lobe belongs to the impact if its extreme is >= this x peak


def _first_lobe(y: np.ndarray, i0: int, peak: float, max_back: int) -> tuple[int, int]:
    """Index of the extreme of the earliest lobe connected to sample ``i0``, and the number
    of lobes walked (1 = the lobe of ``i0``)."""
    lo = max(0, i0 - max_back)
    s = np.sign(y[lo : i0 + 1])
    # lobe boundaries (sign changes) going backwards from i0
    change = np.flatnonzero(np.diff(s) != 0) + lo + 1  # first index of each new lobe
    bounds = np.concatenate([[lo], change, [i0 + 1]])
    best = i0
    n = 1
    # the lobe of i0 spans bounds[-2]:i0+1; walk to earlier lobes
    for k in range(len(bounds) - 2, 0, -1):
        a, b = bounds[k - 1], bounds[k]
        j = a + int(np.argmax(np.abs(y[a:b])))
        if abs(y[j]) < LOBE_FRACTION * peak:
            break
        best = j
        n += 1
    return best, n


@dataclass(frozen=True)
class Impact:
    """One impact in one pass.

    Attributes
    ----------
    offset_m : distance along the segment, m (start of the impact)
    peak_mps2 : largest |band-passed acceleration|, m/s^2
    polarity : -1 down-first (pothole-like), +1 up-first (bump-like)
    slowdown : speed at impact / max speed over the previous 60 m (<= 1)
    n_lobes : lobes above half the peak within the impact
    speed_kmh : speed at the impact, km/h
    severity : peak / pass robust scale (dimensionless)
    """

    offset_m: float
    peak_mps2: float
    polarity: int
    slowdown: float
    n_lobes: int
    speed_kmh: float
    severity: float

    @property
    def pothole_like(self) -> bool:
        return self.polarity < 0 and self.slowdown >= 0.8


def _validate(accel: Any, speed: Any, fs: float) -> tuple[np.ndarray, np.ndarray, float]:
    fs = float(fs)
    if not np.isfinite(fs) or fs < 4.0:
        raise ValueError(f"fs must be a finite sample rate >= 4 Hz, got {fs=}")
    a = np.asarray(accel)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"accel_vert_mps2 must be real numeric, got dtype {a.dtype}")
    a = a.astype(float, copy=False)
    if a.ndim != 1:
        raise ValueError(f"accel_vert_mps2 must be 1-D (one pass), got shape {a.shape}")
    v = np.asarray(speed, float)
    v = np.full(a.shape, float(v)) if v.ndim == 0 else v
    if v.shape != a.shape:
        raise ValueError(f"speed_kmh shape {v.shape} must match accel_vert_mps2 {a.shape}")
    return a, v, fs


def detect_impacts(
    accel_vert_mps2: np.ndarray,
    speed_kmh: np.ndarray | float,
    fs: float,
    offset_m: np.ndarray | float = 0.0,
    *,
    k_sigma: float = K_SIGMA,
    floor_mps2: float = FLOOR_MPS2,
    group_m: float = GROUP_M,
) -> list[Impact]:
    """Impacts (short sharp events) of one pass, placed along the segment.

    Parameters
    ----------
    accel_vert_mps2 : (n,) array_like
        Vertical acceleration, m/s^2 (gravity included or not).
    speed_kmh : (n,) array_like or float
        Speed, km/h.
    fs : float
        Sample rate, Hz.
    offset_m : (n,) array_like or float, optional
        Distance along the segment of each sample (m, from map matching), or the offset
        of the first sample (the rest is integrated from the speed). Default 0.
    k_sigma, floor_mps2, group_m : float, optional
        Threshold (multiples of the robust scale, absolute floor in m/s^2) and grouping
        distance (m).

    Returns
    -------
    impacts : list of Impact
        In driving order. Empty for passes shorter than 1 s.

    Warnings
    --------
    At 10 Hz the band stops at 4.5 Hz: impacts are smeared, polarity is less reliable and
    short potholes are missed; :func:`confirm` lowers the confidence accordingly (pass
    ``fs`` per impact set to it via ``fs_hz``).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.full(500, 9.81); a[250:253] = [5.0, 9.81, 16.0]   # down, then up
    >>> imp = detect_impacts(a, 36.0, 100.0, 0.0)
    >>> [(round(i.offset_m), i.polarity) for i in imp]
    [(25, -1)]
    """
    a, v_kmh, fs = _validate(accel_vert_mps2, speed_kmh, fs)
    if a.size < fs:
        return []
    v = v_kmh / 3.6
    off = np.asarray(offset_m, float)
    if off.ndim == 0:
        off = float(off) + np.concatenate([[0.0], np.cumsum(v[:-1] / fs)])
    elif off.shape != a.shape:
        raise ValueError(f"offset_m shape {off.shape} must match accel_vert_mps2 {a.shape}")
    top = min(BAND_HZ[1], 0.45 * fs)
    lo = min(BAND_HZ[0], 0.3 * top)
    sos = signal.butter(2, [lo, top], btype="bandpass", fs=fs, output="sos")
    y = signal.sosfilt(sos, a, zi=signal.sosfilt_zi(sos) * a[0])[0]
    sigma = 1.4826 * float(np.median(np.abs(y - np.median(y))))
    thr = max(k_sigma * sigma, floor_mps2)
    mag = np.abs(y)
    peaks, _ = signal.find_peaks(mag, height=thr)
    if peaks.size == 0:
        return []
    # group peaks closer than group_m along the road
    pos = off[peaks]
    breaks = np.flatnonzero(np.diff(pos) > group_m) + 1
    impacts: list[Impact] = []
    cummax_speed = v_kmh  # approach speed from a look-back window
    for grp in np.split(peaks, breaks):
        i_peak = int(grp[np.argmax(mag[grp])])
        peak = float(mag[i_peak])
        # earliest lobe of the impact: walk back from the first strong peak over lobes
        # (runs between zero crossings) whose extreme is >= LOBE_FRACTION of the peak
        first, n_lobes = _first_lobe(y, int(grp[0]), peak, int(0.3 * fs))
        polarity = int(np.sign(y[first])) or 1
        n_lobes += int(np.count_nonzero(np.diff(np.sign(y[grp])) != 0))
        back = (off >= off[first] - LOOKBACK_M) & (np.arange(a.size) <= first)
        v_before = float(np.max(cummax_speed[back])) if np.any(back) else float(v_kmh[first])
        slowdown = float(v_kmh[first] / v_before) if v_before > 0 else 1.0
        # place at the onset: a quarter period of the wheel hop (~12 Hz) before the lobe
        onset = float(off[first] - v[first] * 0.02)
        impacts.append(
            Impact(
                offset_m=onset,
                peak_mps2=peak,
                polarity=polarity,
                slowdown=min(slowdown, 1.0),
                n_lobes=n_lobes,
                speed_kmh=float(v_kmh[first]),
                severity=peak / sigma if sigma > 0 else float("inf"),
            )
        )
    return impacts


@dataclass(frozen=True)
class Cluster:
    """Impacts of several passes at one place of one segment.

    Attributes
    ----------
    segment_id, position_m (median offset, m), spread_m (IQR of offsets, m)
    n_impacts, n_vehicles, pothole_fraction (share of pothole-like impacts)
    median_slowdown, median_peak_mps2, vehicles (distinct ids)
    """

    segment_id: Any
    position_m: float
    spread_m: float
    n_impacts: int
    n_vehicles: int
    pothole_fraction: float
    median_slowdown: float
    median_peak_mps2: float
    vehicles: tuple[Any, ...]


def cluster_impacts(
    impacts: Sequence[Impact],
    segment_ids: Sequence[Any],
    vehicle_ids: Sequence[Any],
    *,
    gap_m: float = 5.0,
) -> list[Cluster]:
    """Group impacts of many passes along each segment (1-D, single linkage with ``gap_m``).

    Parameters
    ----------
    impacts : sequence of Impact
    segment_ids, vehicle_ids : sequences, one per impact
    gap_m : float
        A gap larger than this between consecutive impacts starts a new cluster, m.

    Returns
    -------
    clusters : list of Cluster, by segment then position.

    Examples
    --------
    >>> imp = [Impact(10.0, 3, -1, 1.0, 2, 50, 9), Impact(12.0, 3, -1, 1.0, 2, 50, 9),
    ...        Impact(80.0, 3, 1, 0.5, 2, 20, 9)]
    >>> [(c.position_m, c.n_vehicles) for c in cluster_impacts(imp, ["s"] * 3, ["a", "b", "a"])]
    [(11.0, 2), (80.0, 1)]
    """
    if not (len(impacts) == len(segment_ids) == len(vehicle_ids)):
        raise ValueError(
            f"impacts, segment_ids, vehicle_ids must have equal lengths; got "
            f"{len(impacts)}, {len(segment_ids)}, {len(vehicle_ids)}"
        )
    if gap_m <= 0:
        raise ValueError(f"gap_m must be > 0, got {gap_m=}")
    out: list[Cluster] = []
    seg = np.asarray([str(s) for s in segment_ids], dtype=object)
    keys = {str(s): s for s in segment_ids}
    vid = list(vehicle_ids)
    for s in sorted(set(seg)):
        idx = np.flatnonzero(seg == s)
        pos = np.array([impacts[i].offset_m for i in idx])
        order = np.argsort(pos, kind="stable")
        idx, pos = idx[order], pos[order]
        breaks = np.flatnonzero(np.diff(pos) > gap_m) + 1
        for part in np.split(np.arange(idx.size), breaks):
            members = [impacts[i] for i in idx[part]]
            vehs = tuple(dict.fromkeys(vid[i] for i in idx[part]))
            p = pos[part]
            out.append(
                Cluster(
                    segment_id=keys[s],
                    position_m=float(np.median(p)),
                    spread_m=float(np.subtract(*np.percentile(p, [75, 25]))),
                    n_impacts=len(members),
                    n_vehicles=len(vehs),
                    pothole_fraction=float(np.mean([m.pothole_like for m in members])),
                    median_slowdown=float(np.median([m.slowdown for m in members])),
                    median_peak_mps2=float(np.median([m.peak_mps2 for m in members])),
                    vehicles=vehs,
                )
            )
    return out


@dataclass(frozen=True)
class ConfirmedFeature:
    """A confirmed feature of a segment.

    Attributes
    ----------
    segment_id, position_m (m along the segment)
    kind : 'pothole' or 'bump' (speed bump / rail crossing: reported, never a pothole)
    n_vehicles, n_impacts
    confidence : 0..1
    """

    segment_id: Any
    position_m: float
    kind: Literal["pothole", "bump"]
    n_vehicles: int
    n_impacts: int
    confidence: float


def confirm(
    clusters: Sequence[Cluster],
    *,
    min_vehicles: int = 3,
    min_pothole_fraction: float = 0.6,
    max_slowdown_for_bump: float = 0.8,
    fs_hz: float = 100.0,
) -> list[ConfirmedFeature]:
    """Confirmed potholes (and bumps) from clusters hit by enough distinct vehicles.

    Parameters
    ----------
    clusters : sequence of Cluster
    min_vehicles : int
        Distinct vehicles needed. Default 3.
    min_pothole_fraction : float
        Share of pothole-like impacts needed for a pothole. Default 0.6.
    max_slowdown_for_bump : float
        A median slowdown below this marks a designed feature (drivers brake). Default 0.8.
    fs_hz : float
        Sample rate of the passes; below 50 Hz the confidence is scaled by 0.6.

    Returns
    -------
    features : list of ConfirmedFeature

    Notes
    -----
    Confidence = ``(1 - 0.5 ** (n_vehicles - 1)) * agreement * rate`` where agreement is
    the pothole fraction (or its complement for bumps) and rate 1 (>= 50 Hz) or 0.6.
    """
    if min_vehicles < 1:
        raise ValueError(f"min_vehicles must be >= 1, got {min_vehicles=}")
    rate = 1.0 if fs_hz >= 50 else 0.6
    out: list[ConfirmedFeature] = []
    for c in clusters:
        if c.n_vehicles < min_vehicles:
            continue
        slowed = c.median_slowdown < max_slowdown_for_bump
        if c.pothole_fraction >= min_pothole_fraction and not slowed:
            kind: Literal["pothole", "bump"] = "pothole"
            agree = c.pothole_fraction
        elif c.pothole_fraction <= 1 - min_pothole_fraction or slowed:
            kind = "bump"
            agree = 1 - c.pothole_fraction
        else:
            continue  # mixed signatures: not enough evidence either way
        conf = (1 - 0.5 ** (c.n_vehicles - 1)) * agree * rate
        out.append(ConfirmedFeature(c.segment_id, c.position_m, kind, c.n_vehicles, c.n_impacts, round(conf, 3)))
    return out
