"""Road grade: a smooth random terrain, and the grade (slope) along a route.

The terrain is a sum of a few plane waves (wavelengths 0.4-3 km, random directions and
phases), so that grade is continuous along roads and both directions of a street see the
same slope with opposite signs. Each wave's steepest slope is drawn in 0.5-2.5 %, so the
sum stays below 10 % (typical 2-5 %, the range of the Plaisir and Élancourt hills).

Why it matters: an accelerometer fixed to the body measures specific force, so on a slope
of angle θ the longitudinal axis reads ``a + g sin θ`` (uphill positive). A 6 % downhill
adds -0.6 m/s² to every brake: an ordinary -2.5 m/s² stop then reads like a harsh brake.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from roadnet import RoadNetwork
from simulator.geometry import RouteGeometry, locate

__all__ = ["Terrain", "draw_terrain", "route_grade_rad"]

#: Grade is smoothed along the route over this length (m): roads do not kink vertically.
GRADE_SMOOTHING_M = 15.0


@dataclass(frozen=True, eq=False)
class Terrain:
    """Elevation ``z(x, y) = sum_k a_k sin(kx_k x + ky_k y + phi_k)`` (metres, Lambert-93)."""

    kx: np.ndarray
    ky: np.ndarray
    amplitude_m: np.ndarray
    phase: np.ndarray

    def elevation_m(self, x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
        arg = np.multiply.outer(np.asarray(x_m, float), self.kx) + np.multiply.outer(np.asarray(y_m, float), self.ky)
        return (self.amplitude_m * np.sin(arg + self.phase)).sum(axis=-1)


def draw_terrain(rng: np.random.Generator, *, n_waves: int = 4, slope: tuple[float, float] = (0.005, 0.025)) -> Terrain:
    """A random terrain: ``n_waves`` plane waves, each with steepest slope in ``slope``."""
    lam = np.exp(rng.uniform(np.log(400.0), np.log(3000.0), n_waves))
    direction = rng.uniform(0.0, np.pi, n_waves)
    k = 2.0 * np.pi / lam
    s = rng.uniform(*slope, n_waves)
    return Terrain(
        kx=k * np.cos(direction), ky=k * np.sin(direction), amplitude_m=s / k,
        phase=rng.uniform(0.0, 2.0 * np.pi, n_waves),
    )  # fmt: skip


def route_grade_rad(net: RoadNetwork, geom: RouteGeometry, terrain: Terrain) -> np.ndarray:
    """Grade angle (rad, uphill positive) on the route's distance grid ``geom.s_m``."""
    s = geom.s_m
    k, off = locate(geom, s)
    x, y = net.point_at(geom.segments[k], off)
    z = terrain.elevation_m(x, y)
    ds = float(s[1] - s[0])
    z = gaussian_filter1d(z, GRADE_SMOOTHING_M / ds, mode="nearest")
    return np.arctan(np.gradient(z, s))
