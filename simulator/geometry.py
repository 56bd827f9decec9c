"""Geometry of a route: distance grid, signed curvature, junctions and their turn angles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from scipy.ndimage import gaussian_filter1d

from roadnet import RoadNetwork

__all__ = ["RouteGeometry", "route_geometry", "locate"]

#: Curvature is smoothed over this length (m): cars do not follow polyline corners.
CURVATURE_SMOOTHING_M = 5.0


@dataclass(frozen=True, eq=False)
class RouteGeometry:
    """A route as driven, on a regular distance grid.

    Attributes
    ----------
    segments : (m,) int, segment indices in driving order
    seg_start_m : (m + 1,) float, distance along the route where each segment starts (last: total)
    s_m : (g,) float, distance grid, metres from the route start (step ``ds_m``, last = length)
    curvature_per_m : (g,) float, signed curvature (left turn +), 1/m, smoothed
    junction_m : (m - 1,) float, distance of each segment-to-segment junction
    turn_deg : (m - 1,) float, turn angle at each junction (left +), degrees in (-180, 180]
    is_intersection : (m - 1,) bool, the junction node has another way out (a real crossing)
    """

    segments: np.ndarray
    seg_start_m: np.ndarray
    s_m: np.ndarray
    curvature_per_m: np.ndarray
    junction_m: np.ndarray
    turn_deg: np.ndarray
    is_intersection: np.ndarray

    @property
    def length_m(self) -> float:
        return float(self.seg_start_m[-1])


def route_geometry(net: RoadNetwork, segments: list[int] | np.ndarray, *, ds_m: float = 1.0) -> RouteGeometry:
    """Distance grid and signed curvature of a route (segment indices, in driving order)."""
    segs = np.asarray(segments, dtype=np.int64)
    if segs.size == 0:
        raise ValueError("empty route")
    seg_start = np.concatenate([[0.0], np.cumsum(net.length_m[segs])])
    length = float(seg_start[-1])

    # Polyline of the whole route; vertices placed at the segment's own distances.
    xy, which = shapely.get_coordinates(net.geom_m[segs], return_index=True)
    step = np.r_[0.0, np.hypot(*np.diff(xy, axis=0).T)]
    first = np.r_[True, which[1:] != which[:-1]]
    step[first] = 0.0  # no distance across segment joins
    cum = np.cumsum(step)
    starts = np.flatnonzero(first)
    local = cum - np.repeat(cum[starts], np.diff(np.r_[starts, len(xy)]))
    dist = seg_start[which] + local
    keep = np.r_[True, np.diff(dist) > 1e-6]
    dist, xy = dist[keep], xy[keep]

    n_grid = max(int(np.ceil(length / ds_m)), 2)
    s = np.linspace(0.0, length, n_grid + 1)
    x = np.interp(s, dist, xy[:, 0])
    y = np.interp(s, dist, xy[:, 1])
    ds = s[1] - s[0]
    theta = np.unwrap(np.arctan2(np.diff(y), np.diff(x)))  # at grid midpoints
    theta = gaussian_filter1d(theta, CURVATURE_SMOOTHING_M / max(ds, 1e-9), mode="nearest")
    inner = np.diff(theta) / ds  # at s[1:-1]
    kappa = np.r_[inner[0], inner, inner[-1]]

    # Turn angle at each junction from the segments' own headings (clockwise from north).
    a, b = segs[:-1], segs[1:]
    h_out = net.heading_at(a, net.length_m[a])
    h_in = net.heading_at(b, np.zeros(len(b)))
    turn = -((h_in - h_out + 180.0) % 360.0 - 180.0)  # clockwise heading change = right turn
    n_out = np.array([len(o) for o in net.out_segments])
    node = net.to_node[a]
    # Another way out than straight on and than back: a crossing or a fork.
    others = n_out[node] - (net.reverse[a] >= 0).astype(int)
    return RouteGeometry(
        segments=segs,
        seg_start_m=seg_start,
        s_m=s,
        curvature_per_m=kappa,
        junction_m=seg_start[1:-1],
        turn_deg=turn,
        is_intersection=others >= 2,
    )


def locate(geom: RouteGeometry, s_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position index into ``geom.segments`` and offset (m) along that segment of distances."""
    s = np.clip(np.asarray(s_m, float), 0.0, geom.length_m)
    k = np.clip(np.searchsorted(geom.seg_start_m, s, side="right") - 1, 0, len(geom.segments) - 1)
    return k, s - geom.seg_start_m[k]
