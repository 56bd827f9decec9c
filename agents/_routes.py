"""Bounded shortest-route distances between network nodes, cached per source node.

A small helper of :mod:`agents.map_matching`: the matcher asks for node-to-node distances
from a handful of source nodes at a time, each time with a distance limit (metres) that
depends on the pair of fixes. One scipy ``dijkstra`` call serves all the new sources of a
request; its rows are kept, with the limit they were computed under, and reused for any
later request with the same or a smaller limit (distances within a limit are exact, so a
cached row answers a smaller-limit request exactly as a fresh run would).

The cache lives in one :class:`Router`, which the matcher creates per call: no state is
hidden between calls.
"""

from __future__ import annotations

import numpy as np

from roadnet import RoadNetwork

__all__ = ["Router"]


class Router:
    """Per-call cache of bounded dijkstra rows over ``net.graph``.

    Parameters
    ----------
    net : RoadNetwork
        The network; distances are along ``net.graph`` (segment lengths, metres).
    min_limit_m : float
        Rows are computed with at least this limit (metres) so that they can be reused
        by later requests; small limits cost the same as this one (the call overhead
        dominates).
    max_rows : int
        Cache size (rows of ``n_nodes`` floats and ints); the cache is emptied when full.
    """

    def __init__(self, net: RoadNetwork, *, min_limit_m: float = 400.0, max_rows: int = 512):
        self.net = net
        self.min_limit_m = float(min_limit_m)
        self.max_rows = int(max_rows)
        self._limit: dict[int, float] = {}
        self._dist: dict[int, np.ndarray] = {}
        self._pred: dict[int, np.ndarray] = {}

    def _ensure(self, nodes: np.ndarray, limit_m: float) -> None:
        """Make sure every node in ``nodes`` has a cached row valid up to ``limit_m``."""
        need = [int(n) for n in np.unique(nodes) if self._limit.get(int(n), -1.0) < limit_m]
        if not need:
            return
        if len(self._limit) + len(need) > self.max_rows:
            self._limit.clear()
            self._dist.clear()
            self._pred.clear()
            need = [int(n) for n in np.unique(nodes)]
        lim = max(limit_m, self.min_limit_m)
        dist, pred = self.net.node_distances(np.asarray(need, np.int64), limit_m=lim)
        for k, n in enumerate(need):
            self._limit[n] = lim
            self._dist[n] = dist[k]
            self._pred[n] = pred[k]

    def distances(self, src: np.ndarray, dst: np.ndarray, limit_m: float) -> np.ndarray:
        """Network distances (m) from each ``src`` node to each ``dst`` node.

        Parameters
        ----------
        src, dst : (p,), (q,) int arrays of node indices
        limit_m : float
            Distances above it are reported as ``inf``.

        Returns
        -------
        (p, q) float array, metres; ``inf`` where unreachable within ``limit_m``.
        """
        src = np.asarray(src, np.int64)
        dst = np.asarray(dst, np.int64)
        if len(src) == 0 or len(dst) == 0 or not limit_m > 0:
            return np.full((len(src), len(dst)), np.inf)
        self._ensure(src, limit_m)
        rows = np.stack([self._dist[int(n)] for n in src])
        out = rows[:, dst]
        out[out > limit_m] = np.inf
        return out

    def path(self, src: int, dst: int, limit_m: float) -> np.ndarray:
        """Segment indices of the shortest route from node ``src`` to node ``dst``.

        Empty when ``src == dst`` or when ``dst`` is not reachable within ``limit_m``.
        """
        if src == dst:
            return np.empty(0, np.int64)
        self._ensure(np.array([src]), limit_m)
        if not self._dist[src][dst] <= limit_m:
            return np.empty(0, np.int64)
        segs = self.net.path_from_predecessors(self._pred[src], src, dst)
        return np.asarray(segs, np.int64)
