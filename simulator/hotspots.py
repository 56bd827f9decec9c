"""Where driving turns dangerous: the safety scenario of a simulated fleet (issue 6).

A :class:`SafetyScenario` says which harsh events happen where:

* a **background rate** everywhere (events per km driven, per type; cornering per sharp
  turn), so busy roads collect more events simply because they carry more traffic;
* **hotspots** with an elevated probability of an event *per pass*: junctions (a node
  where three or more streets meet), roundabouts (a one-way ring) and school zones (a
  mid-block stretch of a residential or tertiary street). Each hotspot has its own mix of
  event types and may be **fixed** at a date, after which its rate is multiplied by
  ``fix_factor`` (a before/after study);
* the **confounders** that must not count as harsh events: road grade, mounting
  misalignment, sensor noise (the fleet's ``accel_noise_mps2``), pothole and speed-bump
  impacts (:mod:`simulator.impacts`).

:func:`choose_hotspots` picks hotspots at places that carry traffic, from a pilot of
planned routes (routes only, no motion), deterministically from a seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from roadnet import RoadNetwork
from simulator.routes import TripPlanner

__all__ = [
    "EVENT_TYPES",
    "Hotspot",
    "SafetyScenario",
    "junction_nodes",
    "roundabouts",
    "pilot_traffic",
    "choose_hotspots",
]

EVENT_TYPES = ("harsh_brake", "harsh_accel", "harsh_corner", "swerve")

#: Default type mixes by hotspot kind (relative weights; infeasible types are skipped per pass).
MIX = {
    "junction": {"harsh_brake": 0.45, "harsh_accel": 0.2, "harsh_corner": 0.2, "swerve": 0.15},
    "roundabout": {"harsh_brake": 0.35, "harsh_accel": 0.15, "harsh_corner": 0.35, "swerve": 0.15},
    "school_zone": {"harsh_brake": 0.6, "swerve": 0.4},
}


@dataclass(frozen=True)
class Hotspot:
    """One dangerous place.

    Attributes
    ----------
    id : str, e.g. ``'junction-3'``
    kind : 'junction' | 'roundabout' | 'school_zone'
    nodes : network node indices of the place (junction, ring nodes; () for a school zone)
    segments : segment indices of a school zone (both directions; () otherwise)
    per_pass : probability of a harsh event on each pass through the place
    mix : event type -> relative weight
    fixed_at_s : epoch seconds at which safety works are done (``None``: never)
    fix_factor : rate multiplier after ``fixed_at_s`` (0.5 = rate halved)
    x_m, y_m : Lambert-93 position (metres)
    """

    id: str
    kind: str
    nodes: tuple[int, ...] = ()
    segments: tuple[int, ...] = ()
    per_pass: float = 0.15
    mix: dict[str, float] = field(default_factory=dict)
    fixed_at_s: float | None = None
    fix_factor: float = 0.5
    x_m: float = float("nan")
    y_m: float = float("nan")

    def rate_at(self, t_s: float) -> float:
        """Per-pass event probability at time ``t_s`` (epoch seconds)."""
        if self.fixed_at_s is not None and t_s >= self.fixed_at_s:
            return self.per_pass * self.fix_factor
        return self.per_pass


@dataclass(frozen=True, kw_only=True)
class SafetyScenario:
    """What :func:`simulator.simulate_fleet` injects when given ``safety=``.

    Attributes
    ----------
    hotspots : the dangerous places
    background_per_km : type -> events per km driven, everywhere (brake, accel, swerve)
    corner_per_turn : probability of a harsh cornering at each turn of 40° or more
    grade : simulate road grade (terrain drawn from the fleet's seed)
    misalignment_sigma_deg : per-vehicle mounting roll/pitch/yaw spread, degrees (0: none)
    potholes_per_km : pavement potholes per km by road class ('default' for the others)
    bump_prob : probability that a residential/living street segment (>= 40 m) has a hump
    bump_speed_kmh : speed drivers slow to at a hump
    comfort_decel_mps2, comfort_accel_mps2, comfort_lat_mps2 : caps on every driver's
        ordinary limits, so that ordinary driving stays clear of the harsh thresholds
    """

    hotspots: tuple[Hotspot, ...] = ()
    background_per_km: dict[str, float] = field(
        default_factory=lambda: {"harsh_brake": 0.04, "harsh_accel": 0.03, "swerve": 0.02}
    )
    corner_per_turn: float = 0.01
    grade: bool = True
    misalignment_sigma_deg: float = 2.0
    potholes_per_km: dict[str, float] = field(
        default_factory=lambda: {"residential": 3.0, "unclassified": 3.0, "default": 1.0}
    )
    bump_prob: float = 0.08
    bump_speed_kmh: float = 25.0
    comfort_decel_mps2: float = 2.6
    comfort_accel_mps2: float = 2.0
    comfort_lat_mps2: float = 2.8


def junction_nodes(net: RoadNetwork) -> np.ndarray:
    """Boolean mask of nodes where three or more distinct neighbouring nodes meet."""
    a = np.concatenate([net.from_node, net.to_node])
    b = np.concatenate([net.to_node, net.from_node])
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    deg = np.bincount(pairs[:, 0], minlength=net.n_nodes)
    return deg >= 3


def roundabouts(net: RoadNetwork, *, max_piece_m: float = 80.0, ring_m: tuple[float, float] = (40.0, 400.0)) -> list[np.ndarray]:
    """Node sets of one-way rings (roundabouts): strongly connected groups of >= 3 nodes
    joined by short one-way pieces, with a ring length in ``ring_m``."""
    m = (net.reverse < 0) & (net.length_m <= max_piece_m)
    n = net.n_nodes
    g = csr_matrix((np.ones(int(m.sum())), (net.from_node[m], net.to_node[m])), shape=(n, n))
    _, lab = connected_components(g, directed=True, connection="strong")
    sizes = np.bincount(lab)
    out = []
    for c in np.flatnonzero(sizes >= 3):
        nodes = np.flatnonzero(lab == c)
        inside = m & np.isin(net.from_node, nodes) & np.isin(net.to_node, nodes)
        ring = float(net.length_m[inside].sum())
        if ring_m[0] <= ring <= ring_m[1]:
            out.append(nodes)
    return out


def pilot_traffic(net: RoadNetwork, rng: np.random.Generator, *, n_trips: int = 400, trip_km: tuple[float, float] = (2.0, 6.0)) -> np.ndarray:
    """Passes per segment of ``n_trips`` planned routes (no motion): a traffic estimate."""
    planner = TripPlanner(net)
    counts = np.zeros(len(net))
    for _ in range(n_trips):
        route = planner.plan(rng, trip_m=1000.0 * rng.uniform(*trip_km))
        np.add.at(counts, np.asarray(route, np.int64), 1.0)
    return counts


def choose_hotspots(
    net: RoadNetwork,
    *,
    seed: int,
    n_junctions: int = 5,
    n_roundabouts: int = 2,
    n_school_zones: int = 3,
    per_pass: float = 0.15,
    fixed_per_pass: float = 0.3,
    fixed_at_s: float | None = None,
    fix_factor: float = 0.5,
    n_fixed: int = 3,
    min_separation_m: float = 400.0,
    skip_busiest: float = 0.03,
    n_pilot_trips: int = 400,
) -> tuple[Hotspot, ...]:
    """Hotspots at places that carry traffic, deterministic in ``seed``.

    Junctions are drawn among the busiest 30 % of junction nodes in a pilot traffic
    estimate, leaving out the busiest ``skip_busiest`` fraction (so that the busiest
    arterials are *not* hotspots: a ranking must not just follow traffic); roundabouts
    among rings with traffic; school zones on two-way residential/tertiary/unclassified
    segments of 120-400 m with traffic. Hotspots are ``min_separation_m`` apart.

    When ``fixed_at_s`` is given, the ``n_fixed`` busiest junctions of all are hotspots
    treated by one safety programme at that date (rate per pass ``fixed_per_pass``,
    multiplied by ``fix_factor`` afterwards; they count among the ``n_junctions``); with
    ``fix_factor=1`` nothing changes (a null before/after study).
    """
    rng = np.random.default_rng([int(seed), 0x5AFE])
    traffic = pilot_traffic(net, rng, n_trips=n_pilot_trips)
    node_traffic = np.bincount(net.to_node, weights=traffic, minlength=net.n_nodes)
    nx = np.zeros(net.n_nodes)
    ny = np.zeros(net.n_nodes)
    import shapely

    start = shapely.get_point(net.geom_m, 0)
    nx[net.from_node], ny[net.from_node] = shapely.get_x(start), shapely.get_y(start)

    chosen: list[Hotspot] = []

    def far_enough(x: float, y: float) -> bool:
        return all(np.hypot(x - h.x_m, y - h.y_m) >= min_separation_m for h in chosen)

    rings = roundabouts(net)
    in_ring = np.zeros(net.n_nodes, bool)
    for r in rings:
        in_ring[r] = True
    # roundabouts first (rarer)
    ring_traffic = np.array([node_traffic[r].max() for r in rings]) if rings else np.zeros(0)
    order = rng.permutation(np.flatnonzero(ring_traffic >= max(5.0, np.quantile(ring_traffic, 0.3)) if len(rings) else []))
    for k in order:
        if sum(h.kind == "roundabout" for h in chosen) >= n_roundabouts:
            break
        r = rings[int(k)]
        x, y = float(nx[r].mean()), float(ny[r].mean())
        if far_enough(x, y):
            chosen.append(Hotspot(f"roundabout-{len(chosen)}", "roundabout", nodes=tuple(int(v) for v in r),
                                  per_pass=per_pass, mix=dict(MIX["roundabout"]), x_m=x, y_m=y))  # fmt: skip

    junc = np.flatnonzero(junction_nodes(net) & ~in_ring & (node_traffic > 0))
    tj = node_traffic[junc]
    hi = np.quantile(tj, 1.0 - skip_busiest)
    lo = np.quantile(tj, 0.7)
    cand = junc[(tj >= lo) & (tj < hi)]
    cand = cand[np.argsort(-node_traffic[cand], kind="stable")]
    fixed_nodes: list[int] = []
    if fixed_at_s is not None:
        # the fixed junctions are the busiest ones: a before/after study needs exposure
        for v in junc[np.argsort(-tj, kind="stable")]:
            if len(fixed_nodes) >= n_fixed:
                break
            if far_enough(float(nx[v]), float(ny[v])):
                fixed_nodes.append(int(v))
                chosen.append(Hotspot(f"junction-fixed-{len(fixed_nodes)}", "junction", nodes=(int(v),),
                                      per_pass=fixed_per_pass, mix=dict(MIX["junction"]), fixed_at_s=fixed_at_s,
                                      fix_factor=fix_factor, x_m=float(nx[v]), y_m=float(ny[v])))  # fmt: skip
    n_j = 0
    for v in rng.permutation(cand):
        if n_j >= n_junctions - len(fixed_nodes):
            break
        if v not in fixed_nodes and far_enough(float(nx[v]), float(ny[v])):
            chosen.append(Hotspot(f"junction-{len(chosen)}", "junction", nodes=(int(v),), per_pass=per_pass,
                                  mix=dict(MIX["junction"]), x_m=float(nx[v]), y_m=float(ny[v])))  # fmt: skip
            n_j += 1

    school = np.flatnonzero(
        np.isin(net.highway, ["residential", "tertiary", "unclassified"]) & (net.reverse >= 0)
        & (net.length_m >= 120.0) & (net.length_m <= 400.0)
    )  # fmt: skip
    both = traffic[school] + traffic[net.reverse[school]]
    school = school[both >= max(3.0, np.quantile(both, 0.8))]
    n_s = 0
    for sgm in rng.permutation(school):
        if n_s >= n_school_zones:
            break
        mid_x, mid_y = net.point_at(np.array([sgm]), np.array([net.length_m[sgm] / 2]))
        x, y = float(mid_x[0]), float(mid_y[0])
        if far_enough(x, y):
            chosen.append(Hotspot(f"school-{len(chosen)}", "school_zone", segments=(int(sgm), int(net.reverse[sgm])),
                                  per_pass=per_pass, mix=dict(MIX["school_zone"]), x_m=x, y_m=y))  # fmt: skip
            n_s += 1
    return tuple(chosen)
