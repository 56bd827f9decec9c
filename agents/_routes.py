"""Bounded shortest-route distances between network nodes, cached per source node.

A small helper of :mod:`agents.map_matching`: the matcher asks for node-to-node distances
from a handful of source nodes at a time, each time with a distance limit (metres) that
depends on the pair of fixes. One scipy ``dijkstra`` call serves all the new sources of a
request; its rows are kept, with the limit they were computed under, and reused for any
later request with the same or a smaller limit (distances within a limit are exact, so a
cached row answers a smaller-limit request exactly as a fresh run would).

One :class:`Router` is shared by every call on a network (:meth:`Router.of`): a stream
worker matches thousands of vehicles on the same few hundred junctions, and rebuilding
the rows for each frame cost a dijkstra run per frame. Sharing cannot change a result
(a row is exact within its limit), only the time it takes.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict

import numba
import numpy as np

from roadnet import RoadNetwork

__all__ = ["Router"]

_SHARED: weakref.WeakKeyDictionary[RoadNetwork, Router] = weakref.WeakKeyDictionary()


class Router:
    """Cache of bounded dijkstra rows over ``net.graph``, least recently used out first.

    Parameters
    ----------
    net : RoadNetwork
        The network; distances are along ``net.graph`` (segment lengths, metres).
    min_limit_m : float
        Rows are computed with at least this limit (metres) so that they can be reused
        by later requests; small limits cost the same as this one (the call overhead
        dominates).
    max_rows : int
        Cache size in rows (each ``n_nodes`` float64 distances and int32 predecessors:
        38 KB on the north SQY network, so 40 MB at the default).
    """

    def __init__(self, net: RoadNetwork, *, min_limit_m: float = 400.0, max_rows: int = 1024):
        self.net = net
        self.min_limit_m = float(min_limit_m)
        self.max_rows = int(max_rows)
        # node -> (limit, dist row, pred row)
        self._rows: OrderedDict[int, tuple[float, np.ndarray, np.ndarray]] = OrderedDict()
        self._pair_keys: np.ndarray | None = None  # src * n_nodes + dst, sorted
        self._pair_dist: np.ndarray | None = None

    @classmethod
    def of(cls, net: RoadNetwork) -> Router:
        """The router shared by every caller on ``net`` (created on first use)."""
        r = _SHARED.get(net)
        if r is None:
            r = _SHARED[net] = cls(net)
        return r

    def _ensure(self, nodes: list[int], limit_m: float) -> None:
        """Make sure every node in ``nodes`` has a cached row valid up to ``limit_m``."""
        rows = self._rows
        need = []
        for n in nodes:
            row = rows.get(n)
            if row is None or row[0] < limit_m:
                need.append(n)
            else:
                rows.move_to_end(n)
        if not need:
            return
        need = sorted(set(need))
        lim = max(limit_m, self.min_limit_m)
        dist, pred = self.net.node_distances(np.asarray(need, np.int64), limit_m=lim)
        for k, n in enumerate(need):
            rows[n] = (lim, dist[k], pred[k].astype(np.int32))
            rows.move_to_end(n)
        while len(rows) > max(self.max_rows, len(nodes)):
            rows.popitem(last=False)

    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every node pair within ``min_limit_m`` with its distance, built on first use.

        On the SQY north network: 146 k pairs (2.3 MB), 0.2 s. The matcher's requests
        between fixes a second or two apart stay under this limit, and a lookup of a
        whole transition matrix is then one ``searchsorted``."""
        if self._pair_keys is None:
            n = self.net.graph.shape[0]
            keys, dists = [], []
            for lo in range(0, n, 512):
                src = np.arange(lo, min(n, lo + 512), dtype=np.int64)
                dist, _ = self.net.node_distances(src, limit_m=self.min_limit_m)
                i, j = np.nonzero(np.isfinite(dist))
                keys.append(src[i] * n + j)
                dists.append(dist[i, j])
            k = np.concatenate(keys)
            order = np.argsort(k)
            self._pair_keys, self._pair_dist = k[order], np.concatenate(dists)[order]
        return self._pair_keys, self._pair_dist  # type: ignore[return-value]

    def table(self, limit_m: float) -> tuple[np.ndarray, np.ndarray, int] | None:
        """``(keys, dist, n_nodes)`` of the pair table when it answers requests up to
        ``limit_m`` (see :meth:`distances`; :func:`_table_distances` looks pairs up in it),
        else None."""
        if not 0.0 < limit_m <= self.min_limit_m:
            return None
        keys, dist = self._pairs()
        return (keys, dist, self.net.graph.shape[0]) if keys.size else None

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
        dst = np.asarray(dst, np.int64)
        if len(src) == 0 or len(dst) == 0 or not limit_m > 0:
            return np.full((len(src), len(dst)), np.inf)
        if limit_m <= self.min_limit_m:
            table = self.table(limit_m)
            if table is None:  # no pair within the table's limit
                return np.full((len(src), len(dst)), np.inf)
            return _table_distances(np.asarray(src, np.int64), dst, *table, float(limit_m))
        nodes = [int(n) for n in src]
        self._ensure(nodes, limit_m)
        rows = self._rows
        out = np.stack([rows[n][1][dst] for n in nodes])
        out[out > limit_m] = np.inf
        return out

    def path(self, src: int, dst: int, limit_m: float) -> np.ndarray:
        """Segment indices of the shortest route from node ``src`` to node ``dst``.

        Empty when ``src == dst`` or when ``dst`` is not reachable within ``limit_m``.
        """
        if src == dst:
            return np.empty(0, np.int64)
        self._ensure([src], limit_m)
        _, dist, pred = self._rows[src]
        if not dist[dst] <= limit_m:
            return np.empty(0, np.int64)
        segs = self.net.path_from_predecessors(pred, src, dst)
        return np.asarray(segs, np.int64)


@numba.njit(cache=True, error_model="numpy")
def _table_distances(src, dst, keys, dist, n_nodes, limit_m):  # noqa: ANN001
    """(p, q) distances from the pair table (keys ``src * n_nodes + dst``, sorted, unique),
    ``inf`` where a pair is not in it or is longer than ``limit_m``: the NumPy lookup it
    replaced (one ``searchsorted`` of all keys) as one compiled loop, the same values."""
    out = np.empty((src.size, dst.size))
    for i in range(src.size):
        # the source's row of keys (a few dozen) found once, then each pair searched in it:
        # the same entry as a search of all 146 k keys, in a third of the time
        base = src[i] * n_nodes
        lo = np.searchsorted(keys, base)
        row = keys[lo : np.searchsorted(keys, base + n_nodes)]
        for j in range(dst.size):
            key = base + dst[j]
            pos = np.searchsorted(row, key)
            v = dist[lo + pos] if pos < row.size and row[pos] == key else np.inf
            out[i, j] = np.inf if v > limit_m else v
    return out
