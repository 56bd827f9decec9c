"""The road network: segments, their metric geometry, one STRtree and the directed graph.

Built once from a GeoJSON FeatureCollection of directed LineString segments (the SQY files
in ``roadnet/data`` or any network with the same properties) and shared by map matching,
the simulator, the pipeline and the API. Immutable after construction.

Coordinates are reprojected to Lambert-93 (EPSG:2154, metres) before anything is measured:
Shapely is Cartesian and unitless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numba
import numpy as np
import shapely
from pyproj import Transformer
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from roadnet._errors import NetworkError

__all__ = ["RoadNetwork", "load_network", "DEFAULT_NETWORK", "METRIC_CRS"]

METRIC_CRS = "EPSG:2154"
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_NETWORK = DATA_DIR / "sqy-plaisir-roads.geojson"
ATTRIBUTION = "© OpenStreetMap contributors, road geometry under ODbL 1.0"

_REQUIRED = ("segment_id", "from_node", "to_node")

_TO_METRIC = Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
_TO_WGS84 = Transformer.from_crs(METRIC_CRS, "EPSG:4326", always_xy=True)


def to_metric(lon_deg: Any, lat_deg: Any) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 degrees to Lambert-93 metres (x east, y north); NaN in, NaN out."""
    x, y = _TO_METRIC.transform(np.asarray(lon_deg, float), np.asarray(lat_deg, float))
    return np.asarray(x, float), np.asarray(y, float)


def to_wgs84(x_m: Any, y_m: Any) -> tuple[np.ndarray, np.ndarray]:
    """Lambert-93 metres to WGS84 (lon, lat) degrees."""
    lon, lat = _TO_WGS84.transform(np.asarray(x_m, float), np.asarray(y_m, float))
    return np.asarray(lon, float), np.asarray(lat, float)


@dataclass(frozen=True, eq=False)
class RoadNetwork:
    """Directed road segments with parallel attribute arrays (index ``i`` = one segment).

    Attributes
    ----------
    segment_id : (n,) object array of str
    osm_way_id : (n,) int64 array (-1 where unknown)
    highway, ref : (n,) object arrays (ref is None where OSM has none)
    maxspeed_kmh, lanes : (n,) float arrays
    length_m : (n,) float, length of the metric geometry, metres
    from_node, to_node : (n,) int arrays, indices into ``node_id``
    node_id : (m,) object array of the source node ids
    geom_m : (n,) shapely LineStrings in EPSG:2154 metres
    geom_wgs84 : (n,) shapely LineStrings in lon/lat degrees
    reverse : (n,) int, index of the opposite-direction segment, -1 if one-way
    tree : STRtree over ``geom_m`` (query results are indices into the arrays above)
    """

    name: str
    segment_id: np.ndarray
    osm_way_id: np.ndarray
    highway: np.ndarray
    ref: np.ndarray
    maxspeed_kmh: np.ndarray
    lanes: np.ndarray
    length_m: np.ndarray
    from_node: np.ndarray
    to_node: np.ndarray
    node_id: np.ndarray
    geom_m: np.ndarray
    geom_wgs84: np.ndarray
    reverse: np.ndarray
    attribution: str = ATTRIBUTION
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    # ----------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self.segment_id)

    def index_of(self, segment_id: str) -> int:
        """Array index of a segment id; ``KeyError`` if absent."""
        return self._index[segment_id]

    def indices_of(self, segment_ids: Any) -> np.ndarray:
        """Array indices of many segment ids (-1 for unknown ids)."""
        return np.array([self._index.get(s, -1) for s in segment_ids], dtype=np.int64)

    @cached_property
    def tree(self) -> shapely.STRtree:
        return shapely.STRtree(self.geom_m)

    @cached_property
    def n_nodes(self) -> int:
        return len(self.node_id)

    @cached_property
    def graph(self) -> csr_matrix:
        """Node-to-node adjacency weighted by length (metres); the shortest of parallel segments."""
        edges = self.edge_of_nodes
        seg = np.fromiter(edges.values(), np.int64, len(edges))
        return csr_matrix(
            (self.length_m[seg], (self.from_node[seg], self.to_node[seg])),
            shape=(self.n_nodes, self.n_nodes),
        )

    @cached_property
    def edge_of_nodes(self) -> dict[tuple[int, int], int]:
        """(from_node, to_node) -> index of the shortest segment joining them."""
        out: dict[tuple[int, int], int] = {}
        for i in np.argsort(-self.length_m):
            out[(int(self.from_node[i]), int(self.to_node[i]))] = int(i)
        return out

    @cached_property
    def out_segments(self) -> list[np.ndarray]:
        """Per node, indices of the segments leaving it."""
        order = np.argsort(self.from_node, kind="stable")
        bounds = np.searchsorted(self.from_node[order], np.arange(self.n_nodes + 1))
        return [order[bounds[k] : bounds[k + 1]] for k in range(self.n_nodes)]

    @cached_property
    def total_length_m(self) -> float:
        return float(self.length_m.sum())

    # ------------------------------------------------------------ geometry
    def project(self, segment: np.ndarray, x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
        """Distance along each segment (m from its start) of the nearest point to (x, y)."""
        pts = shapely.points(np.asarray(x_m, float), np.asarray(y_m, float))
        return np.asarray(shapely.line_locate_point(self.geom_m[segment], pts), float)

    def point_at(self, segment: np.ndarray, offset_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Metric (x, y) at ``offset_m`` along each segment (clipped to the segment)."""
        pts = shapely.line_interpolate_point(self.geom_m[np.asarray(segment)], offset_m)
        return shapely.get_x(pts), shapely.get_y(pts)

    def point_at_wgs84(self, segment: Any, offset_m: Any) -> tuple[np.ndarray, np.ndarray]:
        """(lon, lat) degrees at ``offset_m`` along each segment."""
        x, y = self.point_at(np.asarray(segment), np.asarray(offset_m, float))
        return to_wgs84(x, y)

    def heading_at(self, segment: np.ndarray, offset_m: np.ndarray) -> np.ndarray:
        """Driving direction at ``offset_m`` along each segment, degrees clockwise from north
        (the chord from 1 m before to 1 m after, within the segment)."""
        segment, offset_m = np.broadcast_arrays(np.asarray(segment, np.int64), np.asarray(offset_m, float))
        shape, segment, offset_m = segment.shape, segment.ravel(), offset_m.ravel()
        lo = np.clip(offset_m - 1.0, 0.0, None)
        hi = np.minimum(offset_m + 1.0, self.length_m[segment])
        ptr, xy = self._vertices
        # the map matcher asks this for every candidate of every fix: one compiled loop
        # instead of two GEOS interpolations and four coordinate reads
        x0, y0 = _interpolate(segment, lo, ptr, xy)
        x1, y1 = _interpolate(segment, hi, ptr, xy)
        return (np.degrees(np.arctan2(x1 - x0, y1 - y0)) % 360.0).reshape(shape)

    @cached_property
    def _vertices(self) -> tuple[np.ndarray, np.ndarray]:
        """The vertices of all segments: ``xy[ptr[i]:ptr[i + 1]]`` are segment ``i``'s (m)."""
        n = shapely.get_num_coordinates(self.geom_m)
        return np.concatenate([[0], np.cumsum(n)]).astype(np.int64), shapely.get_coordinates(self.geom_m)

    # --------------------------------------------------------------- routes
    def node_distances(
        self, source_nodes: np.ndarray, *, limit_m: float = np.inf
    ) -> tuple[np.ndarray, np.ndarray]:
        """Shortest network distances (m) and predecessors from each source node.

        Returns ``(dist, pred)`` of shape (len(source_nodes), n_nodes); unreachable
        nodes (or beyond ``limit_m``) have ``inf`` distance and predecessor -9999.
        """
        src = np.atleast_1d(np.asarray(source_nodes, dtype=np.int64))
        dist, pred = dijkstra(
            self.graph, directed=True, indices=src, limit=limit_m, return_predecessors=True
        )
        return np.atleast_2d(dist), np.atleast_2d(pred)

    def route(self, from_node: int, to_node: int) -> list[int]:
        """Segment indices of a shortest route between two nodes ([] if none or same)."""
        if from_node == to_node:
            return []
        _, pred = self.node_distances(np.array([from_node]))
        return self.path_from_predecessors(pred[0], from_node, to_node)

    def path_from_predecessors(self, pred: np.ndarray, source: int, target: int) -> list[int]:
        """Segment indices along the predecessor tree from ``source`` to ``target``."""
        nodes = [int(target)]
        while nodes[-1] != source:
            p = int(pred[nodes[-1]])
            if p < 0:
                return []
            nodes.append(p)
        nodes.reverse()
        return [self.edge_of_nodes[(a, b)] for a, b in zip(nodes[:-1], nodes[1:])]

    # --------------------------------------------------------------- labels
    def label(self, segment: int, offset_m: float | None = None) -> str:
        """Human-readable place: road ref or OSM way, road class, coordinates."""
        i = int(segment)
        off = self.length_m[i] / 2 if offset_m is None else float(offset_m)
        lon, lat = self.point_at_wgs84(np.array([i]), np.array([off]))
        road = self.ref[i] if self.ref[i] else f"OSM way {self.osm_way_id[i]}"
        return f"{road} ({self.highway[i]}) at {lat[0]:.5f}, {lon[0]:.5f}"


def load_network(path: str | Path | None = None) -> RoadNetwork:
    """Load a directed road network from GeoJSON (default: the SQY Plaisir network).

    Raises
    ------
    NetworkError
        If the file is missing, not GeoJSON, or has no usable LineString segments.
    """
    path = Path(path) if path is not None else DEFAULT_NETWORK
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NetworkError(f"road network file not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise NetworkError(f"cannot read road network {path}: {exc}") from exc
    feats = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(feats, list) or not feats:
        raise NetworkError(f"{path}: not a GeoJSON FeatureCollection with features")

    rows: list[dict[str, Any]] = []
    coords: list[list[list[float]]] = []
    for k, f in enumerate(feats):
        geom = (f or {}).get("geometry") or {}
        props = (f or {}).get("properties") or {}
        if geom.get("type") != "LineString" or len(geom.get("coordinates") or []) < 2:
            raise NetworkError(f"{path}: feature {k} is not a LineString with two points")
        missing = [p for p in _REQUIRED if props.get(p) in (None, "")]
        if missing:
            raise NetworkError(f"{path}: feature {k} lacks properties {missing}")
        rows.append(props)
        coords.append(geom["coordinates"])

    seg_ids = np.array([str(r["segment_id"]) for r in rows], dtype=object)
    uniq, counts = np.unique(seg_ids.astype(str), return_counts=True)
    if (counts > 1).any():
        raise NetworkError(f"{path}: duplicate segment_id {uniq[counts > 1][:5].tolist()}")

    # Bulk reprojection of all vertices at once, then bulk LineString construction.
    sizes = np.array([len(c) for c in coords])
    flat = np.array([p[:2] for c in coords for p in c], dtype=float)
    x, y = to_metric(flat[:, 0], flat[:, 1])
    offsets = np.repeat(np.arange(len(coords)), sizes)
    geom_m = shapely.linestrings(np.column_stack([x, y]), indices=offsets)
    geom_wgs84 = shapely.linestrings(flat, indices=offsets)

    node_labels = np.array(
        [str(r["from_node"]) for r in rows] + [str(r["to_node"]) for r in rows], dtype=object
    )
    node_id, inv = np.unique(node_labels.astype(str), return_inverse=True)
    n = len(rows)
    from_node, to_node = inv[:n].astype(np.int64), inv[n:].astype(np.int64)

    index = {s: i for i, s in enumerate(seg_ids)}
    reverse = np.full(n, -1, dtype=np.int64)
    for i, s in enumerate(seg_ids):
        twin = s[1:] if s.startswith("-") else "-" + s
        j = index.get(twin, -1)
        if j >= 0 and from_node[j] == to_node[i] and to_node[j] == from_node[i]:
            reverse[i] = j

    def col(name: str, default: Any, dtype: Any) -> np.ndarray:
        return np.array([default if r.get(name) is None else r.get(name) for r in rows], dtype=dtype)

    return RoadNetwork(
        name=path.stem,
        segment_id=seg_ids,
        osm_way_id=col("osm_way_id", -1, np.int64),
        highway=col("highway", "unclassified", object),
        ref=np.array([r.get("ref") or None for r in rows], dtype=object),
        maxspeed_kmh=col("maxspeed_kmh", 50.0, float),
        lanes=col("lanes", 1.0, float),
        length_m=np.asarray(shapely.length(geom_m), float),
        from_node=from_node,
        to_node=to_node,
        node_id=node_id.astype(object),
        geom_m=geom_m,
        geom_wgs84=geom_wgs84,
        reverse=reverse,
        _index=index,
    )


@numba.njit(cache=True, error_model="numpy")
def _interpolate(seg, off, ptr, xy):  # noqa: ANN001
    """(x, y) at ``off`` metres along each segment ``seg`` (vertices ``xy[ptr[s]:ptr[s+1]]``):
    ``shapely.line_interpolate_point`` as GEOS computes it (LengthIndexedLine: the first
    piece whose cumulative length passes the offset, the fraction along it; a negative
    offset counts from the end, past the end gives the last vertex, NaN gives NaN), to
    the bit (``tests/unit/test_network.py``)."""
    n = seg.size
    ox = np.empty(n)
    oy = np.empty(n)
    for i in range(n):
        a, b = ptr[seg[i]], ptr[seg[i] + 1]
        length = off[i]
        if np.isnan(length):
            ox[i] = np.nan
            oy[i] = np.nan
            continue
        if length < 0.0:
            total = 0.0
            for k in range(a, b - 1):
                dx, dy = xy[k + 1, 0] - xy[k, 0], xy[k + 1, 1] - xy[k, 1]
                total += np.sqrt(dx * dx + dy * dy)
            length = total + length
        ox[i], oy[i] = xy[b - 1, 0], xy[b - 1, 1]
        if length <= 0.0:
            ox[i], oy[i] = xy[a, 0], xy[a, 1]
            continue
        total = 0.0
        for k in range(a, b - 1):
            x0, y0, x1, y1 = xy[k, 0], xy[k, 1], xy[k + 1, 0], xy[k + 1, 1]
            dx, dy = x1 - x0, y1 - y0
            piece = np.sqrt(dx * dx + dy * dy)
            if total + piece > length:
                frac = (length - total) / piece
                if frac <= 0.0:
                    ox[i], oy[i] = x0, y0
                elif frac >= 1.0:
                    ox[i], oy[i] = x1, y1
                else:
                    ox[i], oy[i] = (x1 - x0) * frac + x0, (y1 - y0) * frac + y0
                break
            total += piece
    return ox, oy
