"""Pothole and speed-hump impacts: the vertical shocks that must NOT count as harsh events.

Features are drawn per directed segment (potholes: Poisson per km by road class, depth
2-10 cm as in :func:`simulator.profiles.draw_features`; humps: on residential and living
streets, circular 3-4 m × 7-10 cm, mirrored on both directions). Each axle's crossing
(front, then rear one wheelbase later) adds to the body accelerations:

* pothole: a wheel-hop transient (11 Hz, 50 ms decay) of ``200 m/s² per m of depth``
  scaled by ``sqrt(v / 14 m/s)`` on the vertical axis (a 5 cm hole at 50 km/h: 10 m/s²),
  a body bounce at 1.3 Hz, and a fore-aft hub shock (13 Hz, 40 ms decay) of half that on
  the longitudinal axis, starting backwards;
* hump: a body lift and drop over the crossing time ``L / v`` (peak ``2π² h v² / L²``),
  a longitudinal ``∓g × slope`` as the wheel climbs then descends, and small transients at
  the edges. Drivers slow to ``bump_speed_kmh`` before a hump (ordinary braking).

Nothing here changes the vehicle's speed: impacts are short and integrate to about zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roadnet import RoadNetwork

__all__ = ["Impacts", "draw_impacts", "impacts_on_route", "impact_signals", "WHEELBASE_M"]

WHEELBASE_M = 2.6
_G = 9.81


@dataclass(frozen=True, eq=False)
class Impacts:
    """Network-wide features: parallel arrays, sorted by (segment, offset)."""

    segment: np.ndarray
    offset_m: np.ndarray
    kind: np.ndarray  # 'pothole' | 'speed_bump'
    height_m: np.ndarray  # negative for a pothole's depth
    length_m: np.ndarray


def draw_impacts(
    net: RoadNetwork, rng: np.random.Generator, *, potholes_per_km: dict[str, float], bump_prob: float
) -> Impacts:
    """Draw potholes and humps on the whole network (vectorised)."""
    rate = np.array([potholes_per_km.get(str(h), potholes_per_km.get("default", 1.0)) for h in net.highway])
    n_p = rng.poisson(rate * net.length_m / 1000.0)
    seg_p = np.repeat(np.arange(len(net)), n_p)
    off_p = rng.uniform(0.05, 0.95, len(seg_p)) * net.length_m[seg_p]
    h_p = -rng.uniform(0.02, 0.10, len(seg_p))
    l_p = rng.uniform(0.2, 1.5, len(seg_p))
    cand = np.flatnonzero(np.isin(net.highway, ["residential", "living_street"]) & (net.length_m >= 40.0))
    cand = cand[(net.reverse[cand] < 0) | (cand < net.reverse[cand])]  # one draw per street
    seg_b = cand[rng.random(len(cand)) < bump_prob]
    off_b = rng.uniform(0.3, 0.7, len(seg_b)) * net.length_m[seg_b]
    h_b = rng.uniform(0.07, 0.10, len(seg_b))
    l_b = rng.uniform(3.0, 4.0, len(seg_b))
    two = net.reverse[seg_b] >= 0
    rev = net.reverse[seg_b][two]
    seg = np.concatenate([seg_p, seg_b, rev])
    off = np.concatenate([off_p, off_b, net.length_m[rev] - off_b[two]])
    kind = np.array(["pothole"] * len(seg_p) + ["speed_bump"] * (len(seg_b) + len(rev)), dtype=object)
    height = np.concatenate([h_p, h_b, h_b[two]])
    length = np.concatenate([l_p, l_b, l_b[two]])
    o = np.lexsort((off, seg))
    return Impacts(seg[o], off[o], kind[o], height[o], length[o])


def impacts_on_route(imp: Impacts, segments: np.ndarray, seg_start_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features met along a route: (route distance (m), index into ``imp``), sorted."""
    pos, idx = [], []
    lo = np.searchsorted(imp.segment, segments, side="left")
    hi = np.searchsorted(imp.segment, segments, side="right")
    for k in np.flatnonzero(hi > lo):
        r = np.arange(lo[k], hi[k])
        pos.append(seg_start_m[k] + imp.offset_m[r])
        idx.append(r)
    if not pos:
        return np.zeros(0), np.zeros(0, np.int64)
    p, i = np.concatenate(pos), np.concatenate(idx)
    o = np.argsort(p, kind="stable")
    return p[o], i[o]


def impact_signals(
    t_s: np.ndarray, s_m: np.ndarray, v_mps: np.ndarray, s_feat_m: np.ndarray, imp: Impacts,
    idx: np.ndarray, fs_hz: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Longitudinal and vertical body acceleration added by the features (m/s², (n,) each),
    and the crossing time of each feature's front axle (s from the trip start; NaN if the
    vehicle never reached it)."""
    n = len(t_s)
    dax, daz = np.zeros(n), np.zeros(n)
    t_cross = np.full(len(idx), np.nan)
    if len(idx) == 0 or n < 2:
        return dax, daz, t_cross
    span = int(1.5 * fs_hz)
    for k, (sf, j) in enumerate(zip(s_feat_m, idx)):
        i0 = int(np.searchsorted(s_m, sf))
        if i0 >= n or s_m[-1] < sf:
            continue
        v = max(float(v_mps[i0]), 0.5)
        t_cross[k] = t_s[i0]
        h, length = float(imp.height_m[j]), float(imp.length_m[j])
        for delay in (0.0, WHEELBASE_M / v):
            a = int(np.searchsorted(t_s, t_s[i0] + delay))
            b = min(a + span, n)
            tau = t_s[a:b] - t_s[a] if b > a else np.zeros(0)
            if imp.kind[j] == "pothole":
                amp = 200.0 * abs(h) * np.sqrt(v / 14.0)
                daz[a:b] += amp * np.exp(-tau / 0.05) * np.sin(2 * np.pi * 11.0 * tau)
                daz[a:b] += 0.2 * amp * np.exp(-tau / 0.4) * np.sin(2 * np.pi * 1.3 * tau)
                dax[a:b] -= 0.5 * amp * np.exp(-tau / 0.04) * np.sin(2 * np.pi * 13.0 * tau)
            else:
                tb = length / v
                on = tau < tb
                lift = 2 * np.pi**2 * h * v**2 / length**2
                daz[a:b] += np.where(on, lift * np.sin(2 * np.pi * tau / tb), 0.0) / 2  # per axle
                slope = 4 * h / length * (1 - 2 * tau / tb)
                dax[a:b] -= np.where(on, _G * slope, 0.0) / 2
                for edge in (0.0, tb):
                    te = tau - edge
                    m = te >= 0
                    daz[a:b] += np.where(m, 0.3 * lift * np.exp(-te / 0.05) * np.sin(2 * np.pi * 11.0 * te), 0.0)
    return dax, daz, t_cross
