"""Hotspots of harsh driving: exposure-normalised, empirical-Bayes rates per zone, ranked.

Counting events is not enough: a busy arterial collects more harsh events than a quiet
street simply because more vehicles drive it. This module turns events and passes into
rates per unit of exposure, shrinks them towards the rate of similar places, and ranks.

Zones
-----
* **Junction zones**: a node where three or more distinct neighbouring nodes meet is a
  junction; junction nodes joined by a segment of at most ``cluster_m`` (40 m) form one
  zone (a dual-carriageway crossing), and so do the nodes of a one-way ring of pieces up to
  80 m (a roundabout).
* **Functional areas**: the last ``approach_m`` (50 m) of road leading into a junction
  zone and the first ``radius_m`` (25 m) leading out of it belong to it, so "events near a
  junction are attributed to the junction". Both are measured along the road, through
  nodes that are not junctions: OSM splits streets into pieces (a bridge, a change of
  speed limit, a bus stop), and an approach brake 30 m before a junction that falls on the
  piece before such a node is still that junction's. The approach is the longer: the
  manoeuvres a junction provokes (late braking, an evasive swerve) start within the
  stopping distance of its conflict points (at 50 km/h: 1 s of reaction, 14 m, plus 32 m
  of braking at 3 m/s²), while those of its exit (a hard acceleration, the end of a
  turn) start in its first few tens of metres. A link shorter than the two areas is split
  between the junctions at its ends in proportion to them (mostly the approach of the
  next one).
* **Segment zones**: the rest of a street, both directions together (safety works treat
  the street, not one direction). A middle part shorter than ``min_mid_m`` (20 m) goes to
  the junctions at its ends.

Exposure
--------
``vehicle_km``: passes x length of the zone's part of each segment, summed; ``n_passes``:
passes into the zone (entering segments for a junction zone, both directions for a
segment zone). Rates: events per vehicle-km and per 1,000 passes.

Empirical Bayes
---------------
Per group of similar zones (kind + road class: a junction zone takes the highest class
meeting there), the rates per vehicle-km follow a Gamma(α, β) prior fitted by the method
of moments (Marshall 1991): ``m = Σy / Σx``, ``s² = Σ x (y/x - m)² / Σx``,
``τ² = max(s² - m / x̄, (0.5 m)²)`` (``MIN_CV``), ``α = m² / τ²``, ``β = m / τ²``. Groups of fewer than
``min_group`` zones borrow the prior of all zones of their kind. Each zone's posterior is
Gamma(α + y, β + x): its mean is the EB rate, its quantiles the interval. By default
zones are ranked by the posterior probability that their rate is at least twice that of
the *ordinary* zones of their group (:func:`ordinary_rate`), under a nonparametric prior
of rate multipliers (:func:`multiplier_prior`); ``rank_by='mean'`` ranks by the Gamma
posterior mean (a zone with few passes is pulled towards its group's mean, so a quiet
street with two events does not outrank a junction with fifty).

Distinct places
---------------
One dangerous place often lights up two neighbouring zones (two nodes of a complex
junction, a junction and the short street next to it): the approach and exit of one
hotspot spill over the functional areas. So that the top of the ranking lists
distinct places, a greedy non-maximum suppression walks the ranking and sets aside every
zone whose centre lies within ``suppress_m`` (80 m, about an approach plus an exit area: the functional areas
of two zones closer than that touch or overlap) of a higher-ranked zone that was kept. The
set-aside zones are not dropped: they follow all kept zones, in their own order, so every
zone (and its prior, for before/after studies) is still in the ranking. ``suppress_m=0``
turns it off.

All functions are pure: arrays in (passes per segment, events' segment and offset, the
road network), arrays out, so the same ranking comes from offline results and from what
the database returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from scipy import stats
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from roadnet import RoadNetwork, to_wgs84

__all__ = ["Zoning", "HotspotRanking", "zoning", "attribute_events", "ordinary_rate", "rank_hotspots", "suppress_neighbours",
           "format_hotspots"]

#: Road classes from the most to the least important (a junction takes its best class).
CLASS_ORDER = (
    "motorway", "trunk", "primary", "secondary", "tertiary", "motorway_link", "trunk_link",
    "primary_link", "secondary_link", "tertiary_link", "unclassified", "residential", "living_street",
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class Zoning:
    """How a network splits into zones (arrays parallel to segments, then to zones).

    Attributes
    ----------
    seg_zone_start, seg_zone_mid, seg_zone_end : (n_seg,) int, zone of each part (-1: none)
    seg_cut_start_m, seg_cut_end_m : (n_seg,) float, offsets where the parts meet, m
    seg_enters : (n_seg,) int, junction zone the segment enters from outside (-1: none)
    seg_length_m : (n_seg,) float, segment lengths, m
    zone_id : (n_zones,) str, stable ids: ``J<node id>`` / ``S<segment id>``
    zone_kind : (n_zones,) 'junction' | 'segment'
    zone_class : (n_zones,) road class (a junction: the best class meeting there)
    zone_x_m, zone_y_m : (n_zones,) Lambert-93 position, m
    zone_segment : (n_zones,) a representative segment (for labels)
    zone_offset_m : (n_zones,) offset on it, m
    """

    seg_zone_start: np.ndarray
    seg_zone_mid: np.ndarray
    seg_zone_end: np.ndarray
    seg_cut_start_m: np.ndarray
    seg_cut_end_m: np.ndarray
    seg_enters: np.ndarray
    seg_length_m: np.ndarray
    zone_id: np.ndarray
    zone_kind: np.ndarray
    zone_class: np.ndarray
    zone_x_m: np.ndarray
    zone_y_m: np.ndarray
    zone_segment: np.ndarray
    zone_offset_m: np.ndarray

    def __len__(self) -> int:
        return len(self.zone_id)

    def exposure(self, n_passes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(passes, vehicle-km) per zone from passes per segment."""
        n = np.asarray(n_passes, float)
        nz = len(self)
        parts = (
            (self.seg_zone_start, self.seg_cut_start_m),
            (self.seg_zone_mid, self.seg_cut_end_m - self.seg_cut_start_m),
            (self.seg_zone_end, self.seg_length_m - self.seg_cut_end_m),
        )
        vkm = np.zeros(nz)
        for z, length in parts:
            m = z >= 0
            vkm += np.bincount(z[m], weights=n[m] * length[m] / 1000.0, minlength=nz)
        passes = np.zeros(nz)
        m = self.seg_enters >= 0
        passes += np.bincount(self.seg_enters[m], weights=n[m], minlength=nz)
        m = self.seg_zone_mid >= 0
        passes += np.bincount(self.seg_zone_mid[m], weights=n[m], minlength=nz)
        return passes, vkm


def _best_class(classes: list[str]) -> str:
    rank = {c: k for k, c in enumerate(CLASS_ORDER)}
    return min(classes, key=lambda c: rank.get(c, len(CLASS_ORDER)))


def zoning(net: RoadNetwork, *, radius_m: float = 25.0, cluster_m: float = 40.0, min_mid_m: float = 20.0,
           approach_m: float | None = 50.0) -> Zoning:  # fmt: skip
    """Split ``net`` into junction and segment zones (cached per network and options).

    ``radius_m``: functional area of a junction on its exits, m, measured along the road
    from the junction; ``approach_m``: on its approaches (``None``: ``radius_m``). Both are
    measured through nodes that are not junctions (a street split into several segments).
    """
    return _zoning(net, float(radius_m), float(cluster_m), float(min_mid_m), float(radius_m if approach_m is None else approach_m))


#: Smallest spread of true rates between zones of a group assumed by the prior (coefficient
#: of variation): without it, one real hotspot among hundreds of ordinary zones does not
#: move the moment estimate and would be shrunk away. Road-safety negative-binomial models
#: find inverse dispersions of ~1-5 (CV 0.45-1), so 0.5 is conservative (prior shape <= 4).
MIN_CV = 0.5

#: Pieces of a one-way ring up to this length (m) make a roundabout, one junction zone.
RING_PIECE_M = 80.0
#: A roundabout's ring is at most this long (m; 400 m of circle is 127 m across) ...
RING_MAX_M = 400.0
#: ... and none of its nodes is farther than this from their centre (m).
RING_RADIUS_M = 80.0


def _node_pairs(net: RoadNetwork) -> np.ndarray:
    """(k, 2) distinct node pairs joined by a segment, both directions, sorted."""
    a = np.concatenate([net.from_node, net.to_node])
    b = np.concatenate([net.to_node, net.from_node])
    return np.unique(np.stack([a, b], axis=1), axis=0)


def _continuations(net: RoadNetwork, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every directed segment, the piece that continues it through its end node and
    the piece that precedes it through its start node, when that node is not a junction
    (two distinct neighbours: a street split in pieces); -1 otherwise."""
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    deg = np.bincount(pairs[:, 0], minlength=net.n_nodes)
    # the two neighbours of each degree-2 node
    first = np.full(net.n_nodes, -1, np.int64)
    second = np.full(net.n_nodes, -1, np.int64)
    starts = np.searchsorted(pairs[:, 0], np.arange(net.n_nodes))
    two = np.flatnonzero(deg == 2)
    first[two], second[two] = pairs[starts[two], 1], pairs[starts[two] + 1, 1]
    # segment index by (from, to) (the first of parallel pieces)
    key = net.from_node.astype(np.int64) * net.n_nodes + net.to_node
    order = np.argsort(key, kind="stable")
    skey = key[order]

    def seg_of(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        k = u * net.n_nodes + v
        i = np.clip(np.searchsorted(skey, k), 0, len(skey) - 1)
        return np.where((u >= 0) & (v >= 0) & (skey[i] == k), order[i], -1)

    def through(v: np.ndarray, u: np.ndarray, downstream: bool) -> np.ndarray:
        other = np.where(first[v] == u, second[v], np.where(second[v] == u, first[v], -1))
        return np.where(deg[v] == 2, seg_of(v, other) if downstream else seg_of(other, v), -1)

    return through(net.to_node, net.from_node, True), through(net.from_node, net.to_node, False)


def _chain_junctions(net: RoadNetwork, node_zone: np.ndarray, cont: np.ndarray, reach_m: float,
                     downstream: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """For every directed segment, the junction zone reached by following the road through
    nodes that are not junctions (``cont``: :func:`_continuations` in that direction), and
    the distance to it, m, from the segment's end (``downstream``) or start (upstream).

    Stops after ``reach_m``; (-1, inf) where no junction is reached within it.
    """
    n_seg = len(net)
    v = net.to_node if downstream else net.from_node
    z = node_zone[v].copy()
    d = np.where(z >= 0, 0.0, np.inf)
    cur, acc = cont.copy(), np.zeros(n_seg)
    for _ in range(n_seg):
        act = np.flatnonzero((z < 0) & (cur >= 0) & (acc < reach_m))
        if not len(act):
            break
        c = cur[act]
        acc[act] += net.length_m[c]
        zc = node_zone[net.to_node[c] if downstream else net.from_node[c]]
        hit = (zc >= 0) & (acc[act] < reach_m)
        z[act[hit]], d[act[hit]] = zc[hit], acc[act[hit]]
        cur[act] = np.where(hit, -1, cont[c])
    return z, d


@lru_cache(maxsize=8)
def _zoning(net: RoadNetwork, radius_m: float, cluster_m: float, min_mid_m: float, approach_m: float,
            ring_piece_m: float = RING_PIECE_M) -> Zoning:  # fmt: skip
    if radius_m < 0 or cluster_m < 0 or min_mid_m < 0 or approach_m < 0:
        raise ValueError(f"{radius_m=}, {approach_m=}, {cluster_m=} and {min_mid_m=} must be >= 0")
    n_seg, n_nodes = len(net), net.n_nodes
    pairs = _node_pairs(net)
    is_j = np.bincount(pairs[:, 0], minlength=n_nodes) >= 3
    # cluster junction nodes joined by short segments
    short = is_j[net.from_node] & is_j[net.to_node] & (net.length_m <= cluster_m)
    # roundabouts: one-way rings of pieces up to ring_piece_m are one junction zone
    oneway = (net.reverse < 0) & (net.length_m <= ring_piece_m)
    go = csr_matrix((np.ones(int(oneway.sum())), (net.from_node[oneway], net.to_node[oneway])), shape=(n_nodes, n_nodes))
    _, ring = connected_components(go, directed=True, connection="strong")
    # a roundabout is compact: a strongly connected group of one-way pieces with a ring of
    # at most RING_MAX_M and every node within RING_RADIUS_M of its centre; a bigger one is
    # a network of one-way streets (found: 25 nodes, 957 m of ring, 170 m across), whose
    # junctions are separate places
    same_ring = oneway & (ring[net.from_node] == ring[net.to_node])
    ring_len = np.bincount(ring[net.from_node[same_ring]], weights=net.length_m[same_ring], minlength=n_nodes)
    sp = shapely.get_point(net.geom_m, 0)
    px, py = np.zeros(n_nodes), np.zeros(n_nodes)
    px[net.from_node], py[net.from_node] = shapely.get_x(sp), shapely.get_y(sp)
    cnt = np.bincount(ring, minlength=n_nodes).astype(float)
    cx = np.bincount(ring, weights=px, minlength=n_nodes) / np.maximum(cnt, 1)
    cy = np.bincount(ring, weights=py, minlength=n_nodes) / np.maximum(cnt, 1)
    spread = np.zeros(n_nodes)
    np.maximum.at(spread, ring, np.hypot(px - cx[ring], py - cy[ring]))
    compact = (cnt >= 3) & (ring_len <= RING_MAX_M) & (spread <= RING_RADIUS_M)
    in_ring = compact[ring]
    ring_link = oneway & in_ring[net.from_node] & (ring[net.from_node] == ring[net.to_node])
    link = short | ring_link
    g = csr_matrix((np.ones(int(link.sum())), (net.from_node[link], net.to_node[link])), shape=(n_nodes, n_nodes))
    _, lab = connected_components(g, directed=False)
    is_j = is_j | in_ring
    jn = np.flatnonzero(is_j)
    _, jzone = np.unique(lab[jn], return_inverse=True)
    node_zone = np.full(n_nodes, -1, np.int64)
    node_zone[jn] = jzone
    n_j = int(jzone.max()) + 1 if len(jn) else 0

    zs, ze = node_zone[net.from_node], node_zone[net.to_node]
    length = net.length_m
    # the junction each segment leads to (its approach) and comes from (its exit), through
    # non-junction nodes, with the distance left of each functional area on this segment
    cont_down, cont_up = _continuations(net, pairs)
    zd, dd = _chain_junctions(net, node_zone, cont_down, approach_m, downstream=True)
    zu, du = _chain_junctions(net, node_zone, cont_up, radius_m, downstream=False)
    r_end = np.where(zd >= 0, np.clip(approach_m - dd, 0.0, length), 0.0)
    r_start = np.where(zu >= 0, np.clip(radius_m - du, 0.0, length), 0.0)
    zd = np.where(r_end > 0, zd, -1)
    zu = np.where(r_start > 0, zu, -1)
    cut0 = r_start
    cut1 = length - r_end
    same = (zs >= 0) & (zs == ze) | (zu >= 0) & (zu == zd) & (cut1 - cut0 < min_mid_m)
    mid_short = (cut1 - cut0 < min_mid_m) & ~same
    # short middles go to the junctions at their ends (split in proportion to the two
    # areas); where the two areas overlap (a link shorter than both), the approach of the
    # junction ahead comes first: the manoeuvres on a short link are mostly braking for
    # what is ahead, and a hard acceleration out of the junction behind starts within a
    # few metres of it
    both = mid_short & (zu >= 0) & (zd >= 0)
    only_s = mid_short & (zu >= 0) & (zd < 0)
    only_e = mid_short & (zu < 0) & (zd >= 0)
    gap = cut1 - cut0
    split = np.where(gap >= 0, cut0 + gap * r_start / np.maximum(r_start + r_end, 1e-9), np.maximum(length - r_end, 0.0))
    cut0 = np.where(both, split, np.where(only_s, length, np.where(only_e, 0.0, cut0)))
    cut1 = np.where(both, split, np.where(only_s, length, np.where(only_e, 0.0, cut1)))
    cut0 = np.where(same, length, cut0)
    cut1 = np.where(same, length, cut1)
    has_mid = cut1 - cut0 > 1e-9
    # segment zones: one per street (a segment and its reverse)
    key = np.where(net.reverse >= 0, np.minimum(np.arange(n_seg), net.reverse), np.arange(n_seg))
    mid_keys = np.unique(key[has_mid])
    seg_zone_of_key = np.full(n_seg, -1, np.int64)
    seg_zone_of_key[mid_keys] = n_j + np.arange(len(mid_keys))
    zmid = np.where(has_mid, seg_zone_of_key[key], -1)
    zstart = np.where(cut0 > 1e-9, zu, -1)
    zend = np.where(length - cut1 > 1e-9, zd, -1)
    zstart = np.where(same, np.where(zs >= 0, zs, zu), zstart)
    enters = np.where((ze >= 0) & (zs != ze), ze, -1)

    # zone attributes
    n_z = n_j + len(mid_keys)
    start_pt = shapely.get_point(net.geom_m, 0)
    nx = np.zeros(n_nodes)
    ny = np.zeros(n_nodes)
    nx[net.from_node], ny[net.from_node] = shapely.get_x(start_pt), shapely.get_y(start_pt)
    end_pt = shapely.get_point(net.geom_m, -1)
    nx[net.to_node], ny[net.to_node] = shapely.get_x(end_pt), shapely.get_y(end_pt)
    zx, zy = np.zeros(n_z), np.zeros(n_z)
    cnt = np.bincount(jzone, minlength=n_j).astype(float)
    zx[:n_j] = np.bincount(jzone, weights=nx[jn], minlength=n_j) / np.maximum(cnt, 1)
    zy[:n_j] = np.bincount(jzone, weights=ny[jn], minlength=n_j) / np.maximum(cnt, 1)
    mx, my = net.point_at(mid_keys, (cut0[mid_keys] + cut1[mid_keys]) / 2)
    zx[n_j:], zy[n_j:] = mx, my
    ids = np.empty(n_z, object)
    first_node = np.full(n_j, -1, np.int64)
    for v in jn[::-1]:
        first_node[node_zone[v]] = v
    ids[:n_j] = ["J" + str(net.node_id[v]) for v in first_node]
    ids[n_j:] = ["S" + str(net.segment_id[s]) for s in mid_keys]
    kind = np.array(["junction"] * n_j + ["segment"] * len(mid_keys), object)
    zclass = np.empty(n_z, object)
    zclass[n_j:] = net.highway[mid_keys]
    touching: list[list[str]] = [[] for _ in range(n_j)]
    rep_seg = np.full(n_z, -1, np.int64)
    rep_seg[n_j:] = mid_keys
    best_len = np.full(n_j, -1.0)
    for s_ in np.flatnonzero(ze >= 0):
        z = ze[s_]
        touching[z].append(str(net.highway[s_]))
        if length[s_] > best_len[z] and zs[s_] != z:
            best_len[z], rep_seg[z] = length[s_], s_
    for s_ in np.flatnonzero(zs >= 0):
        touching[zs[s_]].append(str(net.highway[s_]))
        if rep_seg[zs[s_]] < 0:
            rep_seg[zs[s_]] = s_
    zclass[:n_j] = [_best_class(t) if t else "unclassified" for t in touching]
    zoff = np.zeros(n_z)
    zoff[:n_j] = np.where(ze[np.maximum(rep_seg[:n_j], 0)] == np.arange(n_j), length[np.maximum(rep_seg[:n_j], 0)], 0.0)
    zoff[n_j:] = (cut0[mid_keys] + cut1[mid_keys]) / 2
    zn = Zoning(
        seg_zone_start=zstart, seg_zone_mid=zmid, seg_zone_end=zend, seg_cut_start_m=cut0, seg_cut_end_m=cut1,
        seg_enters=enters, seg_length_m=length.copy(), zone_id=ids, zone_kind=kind, zone_class=zclass, zone_x_m=zx, zone_y_m=zy,
        zone_segment=rep_seg, zone_offset_m=zoff,
    )  # fmt: skip
    return zn


def attribute_events(zn: Zoning, segment: np.ndarray, offset_m: np.ndarray) -> np.ndarray:
    """Zone index of each event from its segment index and offset (m along the segment).

    Events within the functional area of a junction (``approach_m`` before it, ``radius_m``
    after it, along the road) belong to the junction's zone; the others to
    their street's segment zone. Unknown segments (< 0) give -1.
    """
    seg = np.asarray(segment, np.int64)
    off = np.asarray(offset_m, float)
    if seg.shape != off.shape:
        raise ValueError(f"segment and offset_m must have the same shape; got {seg.shape}, {off.shape}")
    ok = seg >= 0
    s = np.where(ok, seg, 0)
    z = np.where(off < zn.seg_cut_start_m[s], zn.seg_zone_start[s], np.where(off > zn.seg_cut_end_m[s], zn.seg_zone_end[s], zn.seg_zone_mid[s]))
    # a part that belongs to no zone (e.g. a cut at 0) falls back to the nearest that does
    z = np.where(z < 0, np.maximum(zn.seg_zone_mid[s], np.maximum(zn.seg_zone_start[s], zn.seg_zone_end[s])), z)
    return np.where(ok, z, -1)


@dataclass(frozen=True, eq=False)
class HotspotRanking:
    """Zones ranked by their empirical-Bayes harsh-event rate (best first).

    Every array has one entry per ranked zone, in rank order.

    Attributes
    ----------
    zone : index into ``zoning`` arrays
    zone_id, kind, road_class, group : str
    n_events, n_passes : counts (passes may be fractional if given so)
    vehicle_km : exposure, vehicle-km
    rate_per_1000_passes, rate_per_vkm : raw rates
    eb_rate_per_vkm, eb_lo_per_vkm, eb_hi_per_vkm : posterior mean and ``level`` interval
    prior_alpha, prior_beta : the zone's group Gamma prior (β in vehicle-km)
    p_excess : posterior probability that the rate exceeds ``excess_factor`` x the group
        mean (nonparametric prior, :func:`multiplier_prior`); 0 where no prior was fitted
    multiplier : posterior mean of the rate / the group's reference rate (NaN where not fitted)
    group_rate_per_vkm : the group's reference rate: that of its ordinary zones
        (:func:`ordinary_rate`; the mean rate with ``ordinary_p=0``)
    lon_deg, lat_deg : WGS84 position
    level : interval probability
    excess_factor : the factor of ``p_excess``
    multiplier_grid, multiplier_weights : the nonparametric prior of rate multipliers
        (:func:`multiplier_prior`), shared by all zones; see :meth:`prior_rates`
    """

    zone: np.ndarray
    zone_id: np.ndarray
    kind: np.ndarray
    road_class: np.ndarray
    group: np.ndarray
    n_events: np.ndarray
    n_passes: np.ndarray
    vehicle_km: np.ndarray
    rate_per_1000_passes: np.ndarray
    rate_per_vkm: np.ndarray
    eb_rate_per_vkm: np.ndarray
    eb_lo_per_vkm: np.ndarray
    eb_hi_per_vkm: np.ndarray
    prior_alpha: np.ndarray
    prior_beta: np.ndarray
    p_excess: np.ndarray
    multiplier: np.ndarray
    group_rate_per_vkm: np.ndarray
    lon_deg: np.ndarray
    lat_deg: np.ndarray
    level: float
    excess_factor: float
    multiplier_grid: np.ndarray
    multiplier_weights: np.ndarray

    def __len__(self) -> int:
        return len(self.zone)

    def prior_rates(self, i: int) -> np.ndarray:
        """The discrete prior of the ``i``-th ranked zone's rate, events per vehicle-km
        (``multiplier_grid`` × its group's reference rate; probabilities ``multiplier_weights``),
        for :func:`agents.before_after.before_after`."""
        return self.multiplier_grid * self.group_rate_per_vkm[i]

    def rows(self) -> list[dict]:
        """One dict per zone (JSON-friendly)."""
        keys = [k for k in self.__dataclass_fields__ if k not in _GLOBAL_FIELDS]
        return [{k: getattr(self, k)[i].item() if hasattr(getattr(self, k)[i], "item") else getattr(self, k)[i] for k in keys} for i in range(len(self))]


_GLOBAL_FIELDS = ("level", "excess_factor", "multiplier_grid", "multiplier_weights")


def _gamma_prior(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Method-of-moments Gamma(α, β) prior of rates y/x (Marshall 1991)."""
    sx = float(x.sum())
    m = float(y.sum()) / sx if sx > 0 else 0.0
    if m <= 0:
        return 0.5, 0.5 / max(1.0 / max(sx, 1e-9), 1e-9)  # no event at all: vague, small
    r = y / x
    s2 = float((x * (r - m) ** 2).sum() / sx)
    tau2 = max(s2 - m / (sx / len(x)), (MIN_CV * m) ** 2)
    return m * m / tau2, m / tau2


def ordinary_rate(y: np.ndarray, x: np.ndarray, *, p_out: float = 1e-3, max_iter: int = 20) -> float:
    """Rate of the ordinary zones of a group, events per unit of exposure.

    The group's mean rate ``Σy / Σx`` is pulled up by the very places a ranking looks for:
    three junctions with 400 harsh brakes each among 80 ordinary ones (about 0.08 events
    per vehicle-km) made the mean of their group 0.27, three times the ordinary rate, and
    every zone's rate multiplier three times too small. So zones whose count is improbable
    under the current rate (Poisson upper tail ``P(Y >= y) < p_out``) are set aside and
    the rate recomputed, until nothing changes (a few iterations).

    Parameters
    ----------
    y : (n,) event counts
    x : (n,) exposures (> 0), e.g. vehicle-km
    p_out : upper-tail probability below which a zone is not ordinary (0: keep all)
    max_iter : iterations at most

    Returns
    -------
    float
        Events per unit of ``x``; 0 when there is no event.

    Examples
    --------
    >>> y = np.r_[np.zeros(90), np.ones(10), [40.0]]
    >>> x = np.ones(101)
    >>> round(ordinary_rate(y, x, p_out=0.0), 3), round(ordinary_rate(y, x), 3)
    (0.495, 0.1)
    """
    y = np.asarray(y, float)
    x = np.asarray(x, float)
    keep = np.ones(len(y), bool)
    m = 0.0
    for _ in range(max_iter):
        sx = float(x[keep].sum())
        m = float(y[keep].sum()) / sx if sx > 0 else 0.0
        if m <= 0 or p_out <= 0:
            break
        new = stats.poisson.sf(y - 1, m * x) >= p_out
        if (new == keep).all():
            break
        keep = new
    return m


#: Rate multipliers (a zone's rate / its group's reference rate) on which the nonparametric prior
#: of :func:`multiplier_prior` lives: 60 log-spaced points from 0.05 to 100 (a zone 100
#: times as harsh as similar places is beyond anything plausible; 0.05 is near-zero).
MULT_GRID = np.geomspace(0.05, 100.0, 60)


def multiplier_prior(
    y: np.ndarray, expected: np.ndarray, *, grid: np.ndarray = MULT_GRID, max_iter: int = 500, tol: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """Nonparametric empirical-Bayes prior of rate multipliers, and each zone's posterior.

    Model: ``y_i ~ Poisson(r_i e_i)`` with ``e_i`` the events expected at the group's reference
    rate and ``r_i`` drawn from an unknown distribution ``G``; ``G`` is the
    Kiefer-Wolfowitz nonparametric maximum likelihood estimate on ``grid`` (fixed-grid EM,
    Laird 1978; Koenker & Mizera 2014). Unlike a Gamma prior, it can put mass on a few
    zones many times harsher than their group, so a zone whose events are far more than a
    busy ordinary zone could produce by chance is recognised as such even with little
    exposure, while ordinary zones with one or two chance events are not.

    Parameters
    ----------
    y : (n,) event counts
    expected : (n,) events expected at the group's reference rate (> 0)
    grid : (k,) multipliers
    max_iter, tol : EM iterations and stopping tolerance on the weights (max abs change)

    Returns
    -------
    weights : (k,) prior probabilities of the grid points (sum 1)
    posterior : (n, k) each zone's posterior over the grid (rows sum 1)
    """
    y = np.asarray(y, float)
    e = np.asarray(expected, float)
    g = np.asarray(grid, float)
    # Poisson log-likelihoods, shifted per row for stability (the shift cancels)
    ll = y[:, None] * np.log(e[:, None] * g[None, :]) - e[:, None] * g[None, :]
    lik = np.exp(ll - ll.max(axis=1, keepdims=True))
    w = np.full(len(g), 1.0 / len(g))
    for _ in range(max_iter):
        post = lik * w
        post /= post.sum(axis=1, keepdims=True)
        w_new = post.mean(axis=0)
        done = np.max(np.abs(w_new - w)) < tol
        w = w_new
        if done:
            break
    post = lik * w
    post /= post.sum(axis=1, keepdims=True)
    return w, post


def rank_hotspots(
    n_passes: np.ndarray,
    event_segment: np.ndarray,
    event_offset_m: np.ndarray,
    net: RoadNetwork,
    *,
    radius_m: float = 25.0,
    approach_m: float | None = 50.0,
    cluster_m: float = 40.0,
    min_mid_m: float = 20.0,
    min_group: int = 20,
    min_passes: float = 10.0,
    level: float = 0.9,
    rank_by: str = "excess",
    excess_factor: float = 2.0,
    suppress_m: float = 80.0,
    ordinary_p: float = 1e-3,
) -> HotspotRanking:
    """Rank zones by their empirical-Bayes rate of harsh events per vehicle-km.

    Parameters
    ----------
    n_passes : (n_segments,) array_like
        Passes per network segment over the period (index = ``net`` segment index).
    event_segment : (m,) array_like of int
        Network segment index of each harsh event (-1: unknown, ignored).
    event_offset_m : (m,) array_like
        Offset of each event along its segment, m (the event's start).
    net : RoadNetwork
    radius_m, cluster_m, min_mid_m : float
        Zoning options, m (see the module docstring).
    min_group : int
        Groups (kind + road class) with fewer zones with exposure use their kind's prior.
    min_passes : float
        Zones with fewer passes are left out of the ranking (they still inform the prior).
    level : float
        Probability of the posterior interval (0.9: 5 % and 95 % quantiles).
    rank_by : 'excess' | 'mean' | 'lower'
        'excess' (default): by the posterior probability that the zone's rate exceeds
        ``excess_factor`` times its group's reference rate (``ordinary_p``), under the nonparametric prior of
        :func:`multiplier_prior` (ties: by the Gamma posterior mean); 'mean': by the
        Gamma posterior mean rate; 'lower': by its interval's lower bound.
    excess_factor : float
        What "accident-prone" means for 'excess': a rate at least this many times that of
        similar places (> 1). Default 2.
    suppress_m : float
        Non-maximum suppression distance between zone centres, m: a zone within this
        distance of a higher-ranked kept zone is moved after all kept zones, so the top of
        the ranking lists distinct places (0: off). Default 80 m, about an approach plus an
        exit area.
    ordinary_p : float
        The reference rate of a group, to which multipliers are relative, is that of its
        ordinary zones: zones whose count is this improbable under it are left out of it
        (:func:`ordinary_rate`). 0 keeps every zone (the group's mean rate).

    Returns
    -------
    HotspotRanking
        Ranked by ``rank_by``, descending (ties: by the second key, then zone id);
        zones set aside by ``suppress_m`` follow the kept ones, in the same order.

    Examples
    --------
    >>> from roadnet import load_network
    >>> net = load_network()
    >>> passes = np.full(len(net), 50.0)
    >>> seg = np.full(30, 100); off = np.full(30, net.length_m[100] / 2)
    >>> r = rank_hotspots(passes, seg, off, net)
    >>> int(r.n_events[0]), bool(r.eb_rate_per_vkm[0] > r.eb_rate_per_vkm[1])
    (30, True)
    """
    n = np.asarray(n_passes, float)
    if n.shape != (len(net),):
        raise ValueError(f"n_passes must have one entry per segment: expected {(len(net),)}, got {n.shape}")
    if not 0 < level < 1:
        raise ValueError(f"{level=} must be in (0, 1)")
    zn = zoning(net, radius_m=radius_m, cluster_m=cluster_m, min_mid_m=min_mid_m, approach_m=approach_m)
    z_ev = attribute_events(zn, event_segment, event_offset_m)
    nz = len(zn)
    y = np.bincount(z_ev[z_ev >= 0], minlength=nz).astype(float)
    passes, vkm = zn.exposure(n)
    group = np.array([f"{k}:{c}" for k, c in zip(zn.zone_kind, zn.zone_class)], object)
    alpha = np.zeros(nz)
    beta = np.zeros(nz)
    has = vkm > 0
    for kind in ("junction", "segment"):
        mk = has & (zn.zone_kind == kind)
        if not mk.any():
            continue
        a_k, b_k = _gamma_prior(y[mk], vkm[mk])
        alpha[zn.zone_kind == kind], beta[zn.zone_kind == kind] = a_k, b_k
        for g in np.unique(group[mk]):
            mg = mk & (group == g)
            if mg.sum() >= min_group:
                a_g, b_g = _gamma_prior(y[mg], vkm[mg])
                alpha[group == g], beta[group == g] = a_g, b_g
            else:
                group[group == g] = f"{kind}:all"
    post_a, post_b = alpha + y, beta + vkm
    mean = post_a / np.maximum(post_b, 1e-12)
    q = (1 - level) / 2
    lo = stats.gamma.ppf(q, post_a, scale=1 / np.maximum(post_b, 1e-12))
    hi = stats.gamma.ppf(1 - q, post_a, scale=1 / np.maximum(post_b, 1e-12))
    keep = np.flatnonzero(has & (passes >= min_passes))
    if rank_by not in ("excess", "mean", "lower"):
        raise ValueError(f"{rank_by=} must be 'excess', 'mean' or 'lower'")
    if not suppress_m >= 0:
        raise ValueError(f"{suppress_m=} must be >= 0")
    if not excess_factor > 1:
        raise ValueError(f"{excess_factor=} must be > 1")
    # nonparametric prior of rate multipliers, pooled over groups (a multiplier is relative
    # to the rate of the ordinary zones of the zone's group, so one distribution serves
    # all groups)
    p_exc = np.zeros(nz)
    mult = np.full(nz, np.nan)
    group_rate = np.zeros(nz)
    for g in np.unique(group[has]):
        mg = has & (group == g)
        group_rate[group == g] = ordinary_rate(y[mg], vkm[mg], p_out=ordinary_p)
    weights = np.full(len(MULT_GRID), 1.0 / len(MULT_GRID))
    fit = has & (group_rate > 0)
    if fit.any():
        expected = group_rate[fit] * vkm[fit]
        weights, post = multiplier_prior(y[fit], expected)
        p_exc[fit] = post[:, MULT_GRID > excess_factor].sum(axis=1)
        mult[fit] = post @ MULT_GRID
    k1, k2 = {"mean": (mean, lo), "lower": (lo, mean), "excess": (p_exc, mean)}[rank_by]
    order = keep[np.lexsort((zn.zone_id[keep].astype(str), -k2[keep], -k1[keep]))]
    order = suppress_neighbours(order, zn.zone_x_m, zn.zone_y_m, suppress_m)
    lon, lat = to_wgs84(zn.zone_x_m[order], zn.zone_y_m[order])
    with np.errstate(divide="ignore", invalid="ignore"):
        r_pass = np.where(passes > 0, 1000.0 * y / passes, np.nan)
        r_vkm = np.where(vkm > 0, y / vkm, np.nan)
    return HotspotRanking(
        zone=order, zone_id=zn.zone_id[order], kind=zn.zone_kind[order], road_class=zn.zone_class[order],
        group=group[order], n_events=y[order].astype(np.int64), n_passes=passes[order], vehicle_km=vkm[order],
        rate_per_1000_passes=r_pass[order], rate_per_vkm=r_vkm[order], eb_rate_per_vkm=mean[order],
        eb_lo_per_vkm=lo[order], eb_hi_per_vkm=hi[order], prior_alpha=alpha[order], prior_beta=beta[order],
        p_excess=p_exc[order], multiplier=mult[order], group_rate_per_vkm=group_rate[order],
        lon_deg=np.asarray(lon, float), lat_deg=np.asarray(lat, float), level=float(level),
        excess_factor=float(excess_factor), multiplier_grid=MULT_GRID.copy(), multiplier_weights=weights,
    )  # fmt: skip


def suppress_neighbours(order: np.ndarray, x_m: np.ndarray, y_m: np.ndarray, distance_m: float) -> np.ndarray:
    """Greedy non-maximum suppression of a ranking of zones (indices into ``x_m``, ``y_m``).

    Walks ``order`` best first; a zone within ``distance_m`` of an already kept zone is set
    aside. Returns the kept zones in order, then the set-aside ones in order (a
    permutation of ``order``). ``distance_m <= 0`` returns ``order`` unchanged.
    """
    order = np.asarray(order, np.int64)
    if distance_m <= 0 or len(order) < 2:
        return order
    pts = np.column_stack([np.asarray(x_m, float)[order], np.asarray(y_m, float)[order]])
    near = cKDTree(pts).query_ball_point(pts, r=float(distance_m))
    out = np.zeros(len(order), bool)
    for i in range(len(order)):
        if out[i]:
            continue
        for j in near[i]:
            if j > i:
                out[j] = True
    return np.concatenate([order[~out], order[out]])


def zone_label(net: RoadNetwork, zn: Zoning, zone: int) -> str:
    """Where a zone is, for a person: roads (ref or OSM way), junction, coordinates."""
    z = int(zone)
    lon, lat = to_wgs84(np.array([zn.zone_x_m[z]]), np.array([zn.zone_y_m[z]]))
    if zn.zone_kind[z] == "segment":
        return net.label(int(zn.zone_segment[z]), float(zn.zone_offset_m[z]))
    segs = np.flatnonzero((zn.seg_zone_end == z) | (zn.seg_zone_start == z))
    roads: list[str] = []
    for s in segs[np.argsort([CLASS_ORDER.index(h) if h in CLASS_ORDER else 99 for h in net.highway[segs]], kind="stable")]:
        name = net.ref[s] if net.ref[s] else f"OSM way {net.osm_way_id[s]}"
        if name not in roads:
            roads.append(name)
    return f"junction of {' × '.join(roads[:4])} ({zn.zone_class[z]}) at {lat[0]:.5f}, {lon[0]:.5f}"


def format_hotspots(ranking: HotspotRanking, net: RoadNetwork, *, top: int = 10, radius_m: float = 25.0,
                    cluster_m: float = 40.0, min_mid_m: float = 20.0, approach_m: float | None = 50.0) -> str:  # fmt: skip
    """A text table of the ``top`` zones for the ``roadsense hotspots`` CLI.

    Pass the zoning options used for ``ranking`` (the defaults match).
    """
    zn = zoning(net, radius_m=radius_m, cluster_m=cluster_m, min_mid_m=min_mid_m, approach_m=approach_m)
    pct = int(round(100 * ranking.level))
    lines = [
        f"{'rank':>4}  {'events':>6}  {'passes':>7}  {'per 1000':>8}  {f'P(>{ranking.excess_factor:g}x)':>8}  "
        f"{'EB /vkm':>8}  {f'{pct}% interval':>15}  zone",
    ]
    for k in range(min(top, len(ranking))):
        lines.append(
            f"{k + 1:>4}  {ranking.n_events[k]:>6d}  {ranking.n_passes[k]:>7.0f}  "
            f"{ranking.rate_per_1000_passes[k]:>8.1f}  {ranking.p_excess[k]:>8.2f}  {ranking.eb_rate_per_vkm[k]:>8.2f}  "
            f"{ranking.eb_lo_per_vkm[k]:>6.2f} – {ranking.eb_hi_per_vkm[k]:<6.2f}  "
            f"{ranking.zone_id[k]}: {zone_label(net, zn, int(ranking.zone[k]))}"
        )
    return "\n".join(lines)
