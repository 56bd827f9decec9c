"""Random plausible trips on the road network.

Trips start and end near busier roads and follow the quickest route under a cost that
prefers arterials (travel time at the speed limit, residential streets penalised), so that
traffic concentrates on main roads as it does in reality.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from roadnet import RoadNetwork

__all__ = ["CLASS_WEIGHT", "TripPlanner"]

#: How attractive a road class is as a trip end (relative weight).
CLASS_WEIGHT = {
    "motorway": 3.0, "trunk": 3.0, "primary": 4.0, "secondary": 4.0, "tertiary": 2.5,
    "motorway_link": 1.0, "trunk_link": 1.0, "primary_link": 1.5, "secondary_link": 1.5,
    "tertiary_link": 1.5, "unclassified": 1.0, "residential": 1.0, "living_street": 0.3,
}  # fmt: skip
#: Routing cost multiplier on travel time per road class (drivers avoid small streets).
CLASS_PENALTY = {"residential": 1.4, "unclassified": 1.2, "living_street": 2.5}
_TYPICAL_SPEED_MPS = 11.0


@dataclass(frozen=True, eq=False)
class TripPlanner:
    """Plans trips on one network; build once, reuse for every vehicle."""

    net: RoadNetwork

    @cached_property
    def component(self) -> np.ndarray:
        """Boolean mask of the nodes in the largest strongly connected component."""
        n = self.net.n_nodes
        g = csr_matrix(
            (np.ones(len(self.net)), (self.net.from_node, self.net.to_node)), shape=(n, n)
        )
        _, labels = connected_components(g, directed=True, connection="strong")
        return labels == np.bincount(labels).argmax()

    @cached_property
    def cost_graph(self) -> csr_matrix:
        """Node graph weighted by penalised travel time (s) at the speed limit."""
        net = self.net
        edges = net.edge_of_nodes
        seg = np.fromiter(edges.values(), np.int64, len(edges))
        pen = np.array([CLASS_PENALTY.get(h, 1.0) for h in net.highway[seg]])
        cost = net.length_m[seg] / (np.maximum(net.maxspeed_kmh[seg], 10.0) / 3.6) * pen
        return csr_matrix(
            (np.maximum(cost, 1e-3), (net.from_node[seg], net.to_node[seg])),
            shape=(net.n_nodes, net.n_nodes),
        )

    @cached_property
    def node_weight(self) -> np.ndarray:
        """Attractiveness of each node as a trip end (0 outside the main component)."""
        net = self.net
        w = np.array([CLASS_WEIGHT.get(h, 1.0) for h in net.highway])
        out = np.zeros(net.n_nodes)
        np.maximum.at(out, net.from_node, w)
        np.maximum.at(out, net.to_node, w)
        return np.where(self.component, out, 0.0)

    def pick_origin(self, rng: np.random.Generator) -> int:
        w = self.node_weight
        return int(rng.choice(len(w), p=w / w.sum()))

    def plan(self, rng: np.random.Generator, *, trip_m: float, origin: int | None = None) -> list[int]:
        """Segment indices of one trip of about ``trip_m`` metres (±20 %) from ``origin``.

        The destination is drawn among nodes at the right travel cost, weighted by road
        class; a few draws are tried and the trip closest to ``trip_m`` is kept.
        """
        if origin is None or not self.component[origin]:
            origin = self.pick_origin(rng)
        cost, pred = dijkstra(self.cost_graph, indices=origin, return_predecessors=True)
        best: list[int] = []
        best_err = np.inf
        speed = _TYPICAL_SPEED_MPS
        for _ in range(6):
            target = trip_m / speed
            ok = (cost > 0.75 * target) & (cost < 1.25 * target) & (self.node_weight > 0)
            if not ok.any():
                ok = np.isfinite(cost) & (cost > 0) & (self.node_weight > 0)
                near = np.abs(cost - target)
                ok &= near <= np.min(near[ok]) * 1.5 + 1.0
            w = np.where(ok, self.node_weight, 0.0)
            dest = int(rng.choice(len(w), p=w / w.sum()))
            path = self.net.path_from_predecessors(pred, origin, dest)
            if not path:
                continue
            length = float(self.net.length_m[path].sum())
            err = abs(length - trip_m) / trip_m
            if err < best_err:
                best, best_err = path, err
            if err < 0.2:
                break
            speed = float(np.clip(length / cost[dest], 3.0, 30.0))  # metres per cost unit
        return best
