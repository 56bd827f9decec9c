"""Tests of agents.map_matching on synthetic drives over the real Plaisir network.

A drive follows a route of the network at ~13 m/s, slowing to a third near turns, and is
sampled at a fix rate with Gaussian noise (seeded). Two shares are measured against the
truth, both along the true path every 1 m of driven distance:

- *path share*: the share of driven distance whose segment is on the matched path (the
  segments of the matched fixes and their ``via``): did the matcher find the roads;
- *timed share*: the share where the matched position at the same time (interpolated
  along the matched path between fixes) is on the true segment; this one is also limited
  by the along-track GPS noise (segments of the drives average ~46 m).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components

from agents.map_matching import (
    MatchParams,
    MatchResult,
    MatchState,
    match,
    match_online,
    path_length_m,
)
from roadnet import to_metric
from simulator import simulate_fleet


# --------------------------------------------------------------------------- drives
def _main_nodes(net):
    _, lab = connected_components(net.graph, directed=True, connection="strong")
    return np.flatnonzero(lab == np.argmax(np.bincount(lab)))


def _random_route(net, rng, min_m=1500.0, max_m=4000.0):
    nodes = _main_nodes(net)
    while True:
        a, b = rng.choice(nodes, 2, replace=False)
        r = net.route(int(a), int(b))
        if r and min_m <= net.length_m[r].sum() <= max_m:
            return np.asarray(r, np.int64)


def _drive(net, route, *, rng, sigma_m=5.0, rate_hz=1.0, speed_mps=13.0, stops=0, stop_s=20.0,
           odo_scale=1.0):
    """Fixes along ``route``; returns a dict with the fixes and the 1 m truth grid.

    ``stops`` turns make the vehicle wait ``stop_s`` seconds; ``odo`` / ``grid_odo`` are
    the odometer (distance driven times ``odo_scale``) at the fixes / grid points.
    """
    route = np.asarray(route, np.int64)
    lengths = net.length_m[route]
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    s = np.arange(0.0, cum[-1], 1.0)
    k = np.clip(np.searchsorted(cum, s, "right") - 1, 0, len(route) - 1)
    h_end = net.heading_at(route, lengths)
    h_start = net.heading_at(route, np.zeros(len(route)))
    turn = np.abs((h_start[1:] - h_end[:-1] + 180.0) % 360.0 - 180.0)
    turn_s = cum[1:-1][turn > 30.0]
    v = np.full(len(s), speed_mps)
    if len(turn_s):
        d = np.min(np.abs(s[:, None] - turn_s[None, :]), axis=1)
        v = speed_mps * (0.35 + 0.65 * np.clip(d / 40.0, 0.0, 1.0))
    t = np.concatenate([[0.0], np.cumsum(1.0 / v[:-1])])
    for s0 in turn_s[:stops]:
        t[s > s0] += stop_s
    tf = np.arange(0.0, t[-1], 1.0 / rate_hz)
    sf = np.interp(tf, t, s)
    kf = np.clip(np.searchsorted(cum, sf, "right") - 1, 0, len(route) - 1)
    x, y = net.point_at(route[kf], sf - cum[kf])
    x = x + rng.normal(0.0, sigma_m, len(x)) if sigma_m else x
    y = y + rng.normal(0.0, sigma_m, len(y)) if sigma_m else y
    return {"t": tf, "x": x, "y": y, "seg": route[kf], "off": sf - cum[kf],
            "grid_t": t, "grid_seg": route[k], "route": route,
            "odo": sf * odo_scale, "grid_odo": s * odo_scale}


def _timed_share(net, d, r):
    """Share of the 1 m truth grid whose matched segment at the same time is right."""
    gt, gseg = d["grid_t"], d["grid_seg"]
    inside = (gt >= r.t_s[0]) & (gt <= r.t_s[-1])
    gt, gseg = gt[inside], gseg[inside]
    got = np.full(len(gt), -1)
    m = np.flatnonzero(r.segment >= 0)
    for p, k in zip(m[:-1], m[1:]):
        if r.break_before[k]:
            continue
        sa, oa, sb, ob, via = r.segment[p], r.offset_m[p], r.segment[k], r.offset_m[k], r.via[k]
        if sa == sb and len(via) == 0:
            segs, lens = np.array([sa]), np.array([max(ob - oa, 0.0)])
        else:
            segs = np.concatenate([[sa], via, [sb]])
            lens = np.concatenate([[net.length_m[sa] - oa], net.length_m[via], [ob]])
        lo, hi = np.searchsorted(gt, [r.t_s[p], r.t_s[k]])
        frac = (gt[lo:hi] - r.t_s[p]) / (r.t_s[k] - r.t_s[p]) * lens.sum()
        j = np.minimum(np.searchsorted(np.cumsum(lens), frac, "right"), len(segs) - 1)
        got[lo:hi] = segs[j]
    got[gt >= r.t_s[m[-1]]] = r.segment[m[-1]]
    return float(np.mean(got == gseg))


def _place(net, r, fix_d, t, d):
    """Segment of each sample (times ``t``, odometer ``d``) placed like the pipeline
    (``agents.passes``): between consecutive matched fixes, proportionally to odometer."""
    got = np.full(len(t), -1)
    m = np.flatnonzero(r.segment >= 0)
    for p, k in zip(m[:-1], m[1:]):
        if r.break_before[k]:
            continue
        sa, oa, sb, ob, via = r.segment[p], r.offset_m[p], r.segment[k], r.offset_m[k], r.via[k]
        if sa == sb and len(via) == 0:
            segs, lens = np.array([sa]), np.array([max(ob - oa, 0.0)])
        else:
            segs = np.concatenate([[sa], via, [sb]])
            lens = np.concatenate([[max(net.length_m[sa] - oa, 0.0)], net.length_m[via], [ob]])
        lo, hi = np.searchsorted(t, [r.t_s[p], r.t_s[k]])
        if fix_d[k] - fix_d[p] > 0.5:
            frac = (d[lo:hi] - fix_d[p]) / (fix_d[k] - fix_d[p])
        else:
            frac = (t[lo:hi] - r.t_s[p]) / (r.t_s[k] - r.t_s[p])
        pos = np.clip(frac, 0.0, 1.0) * lens.sum()
        j = np.minimum(np.searchsorted(np.cumsum(lens), pos, "right"), len(segs) - 1)
        got[lo:hi] = segs[j]
    return got


def _sim_share(net, fleet, sigma_m, *, odometer):
    """Share of the driven distance on the true segment, simulated fleet, pipeline-style:
    odometer from the 100 Hz speed, samples placed by it, truth from ``truth.passes``."""
    ok = tot = 0.0
    for vid, tr in fleet.traces.items():
        v = tr.speed_kmh / 3.6
        d = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(tr.t_s))])
        fix_d = np.interp(tr.fix_t_s, tr.t_s, d)
        x, y = to_metric(tr.fix_lon_deg, tr.fix_lat_deg)
        r = match(net, tr.fix_t_s, x, y, tr.fix_heading_deg, tr.fix_accuracy_m,
                  params=MatchParams(sigma_m=sigma_m), odometer_m=fix_d if odometer else None)
        _check_path(net, r)
        m = np.flatnonzero(r.segment >= 0)
        lo, hi = np.searchsorted(tr.t_s, [r.t_s[m[0]], r.t_s[m[-1]]])
        got = _place(net, r, fix_d, tr.t_s, d)[lo:hi]
        tp = fleet.truth.passes_of(vid)
        i = np.clip(np.searchsorted(tp["entry_t_s"], tr.t_s[lo:hi], "right") - 1, 0, None)
        w = np.diff(d)[lo:hi]
        ok += w[got == tp["segment"][i]].sum()
        tot += w.sum()
    return ok / tot


def _check_path(net, r):
    """Consecutive matched fixes of a chain are joined by their ``via`` segments."""
    m = np.flatnonzero(r.segment >= 0)
    for p, k in zip(m[:-1], m[1:]):
        if r.break_before[k]:
            assert len(r.via[k]) == 0
            continue
        sa, sb, via = int(r.segment[p]), int(r.segment[k]), r.via[k]
        assert 0.0 <= r.offset_m[k] <= net.length_m[sb] + 1e-9
        if sa == sb and len(via) == 0 and r.offset_m[k] >= r.offset_m[p]:
            continue
        nodes = [int(net.to_node[sa])]
        for v in via:
            assert net.from_node[v] == nodes[-1], (p, k)
            nodes.append(int(net.to_node[v]))
        assert net.from_node[sb] == nodes[-1], (p, k)


def _path_share(net, d, r):
    """Share of the driven distance whose segment is on the matched path."""
    matched = set(r.segment[r.segment >= 0].tolist())
    for v in r.via:
        matched.update(v.tolist())
    route = d["route"]
    on = np.array([s in matched for s in route])
    return float(net.length_m[route][on].sum() / net.length_m[route].sum())


def _nearest_segment(net, x, y):
    """The baseline: each fix on its nearest segment (no direction, no continuity)."""
    import shapely

    return np.asarray(net.tree.query_nearest(shapely.points(x, y), return_distance=False,
                                             all_matches=False)[1], np.int64)


def _extend(net, route, back_m=200.0, ahead_m=200.0):
    """Prepend/append straight-ish approach segments (longest, no U-turn) to a route."""
    route = [int(s) for s in route]
    got = 0.0
    while got < back_m:
        first = route[0]
        ins = np.flatnonzero((net.to_node == net.from_node[first]) & (net.reverse != first)
                             & (net.from_node != net.to_node[first]))
        ins = [int(i) for i in ins if i not in route]
        if not ins:
            break
        best = max(ins, key=lambda i: net.length_m[i])
        route.insert(0, best)
        got += net.length_m[best]
    got = 0.0
    while got < ahead_m:
        last = route[-1]
        outs = [int(i) for i in net.out_segments[int(net.to_node[last])]
                if i != net.reverse[last] and net.to_node[i] != net.from_node[last]
                and i not in route]
        if not outs:
            break
        best = max(outs, key=lambda i: net.length_m[i])
        route.append(best)
        got += net.length_m[best]
    return np.asarray(route, np.int64)


def _roundabout_route(net, ring_seg):
    """Enter the one-way ring of ``ring_seg``, drive at least half of it, leave."""
    ow = net.reverse < 0
    ring = [int(ring_seg)]
    while True:
        nxt = [int(i) for i in net.out_segments[int(net.to_node[ring[-1]])] if ow[i]]
        nxt = [i for i in nxt if net.route(int(net.to_node[i]), int(net.from_node[ring[0]]))
               or net.to_node[i] == net.from_node[ring[0]]]
        # follow the ring: the successor that closes the cycle soonest
        nxt.sort(key=lambda i: net.length_m[i])
        cand = None
        for i in nxt:
            back = net.route(int(net.to_node[i]), int(net.from_node[ring[0]]))
            closes = net.to_node[i] == net.from_node[ring[0]]
            if closes or (back and set(back) <= set(np.flatnonzero(ow))):
                cand = i
                break
        if cand is None:
            raise AssertionError("not a ring")
        if net.to_node[cand] == net.from_node[ring[0]]:
            ring.append(cand)
            break
        ring.append(cand)
        if len(ring) > 30:
            raise AssertionError("ring too long")
    nodes = [int(net.from_node[s]) for s in ring]
    ringset = set(ring)
    entries = [(k, int(e)) for k, n in enumerate(nodes)
               for e in np.flatnonzero(net.to_node == n) if int(e) not in ringset]
    k_in, e = entries[0]
    m = len(ring)
    for step in range(m // 2, m):
        k_out = (k_in + step) % m
        exits = [int(x) for x in net.out_segments[nodes[k_out]]
                 if int(x) not in ringset and x != net.reverse[e]]
        if exits:
            seq = [ring[(k_in + j) % m] for j in range(step)]
            return _extend(net, [e, *seq, exits[0]], 150.0, 150.0), set(ring)
    raise AssertionError("no exit found")


def _fix_accuracy(segment, truth, mask=None):
    ok = segment == truth
    return float(ok[mask].mean() if mask is not None else ok.mean())


# --------------------------------------------------------------------------- tests
class TestMatch:
    def test_empty(self, plaisir_net):
        r = match(plaisir_net, [], [], [])
        assert len(r) == 0 and r.via == () and r.segment.dtype == np.int64

    def test_noise_free_exact(self, plaisir_net):
        net = plaisir_net
        rng = np.random.default_rng(11)
        d = _drive(net, _random_route(net, rng), rng=rng, sigma_m=0.0)
        r = match(net, d["t"], d["x"], d["y"])
        assert np.array_equal(r.fix_index, np.arange(len(d["t"])))
        # Within 2 m of a junction the two segments are a geometric tie.
        ends = np.minimum(d["off"], net.length_m[d["seg"]] - d["off"]) < 2.0
        assert np.array_equal(r.segment[~ends], d["seg"][~ends])
        assert _fix_accuracy(r.segment, d["seg"]) >= 0.95
        good = r.segment == d["seg"]
        np.testing.assert_allclose(r.offset_m[good], d["off"][good], atol=1e-6)
        assert not r.break_before.any()
        # The reconstructed path has the driven length.
        total = sum(path_length_m(net, r.segment[k - 1], r.offset_m[k - 1], r.via[k],
                                  r.segment[k], r.offset_m[k]) for k in range(1, len(r)))
        driven = np.interp(d["t"][-1], d["grid_t"], np.arange(len(d["grid_t"])))
        driven -= np.interp(d["t"][0], d["grid_t"], np.arange(len(d["grid_t"])))
        assert total == pytest.approx(driven, abs=2.0)

    @pytest.mark.parametrize(
        ("sigma_m", "rate_hz", "path_min", "timed_min"),
        [
            (5.0, 1.0, 0.97, 0.90),  # the 1 Hz target of issue 3
            (15.0, 1.0, 0.90, 0.72),  # the noisy target of issue 3
            (5.0, 0.2, 0.95, 0.88),  # sparse fixes, 5 s apart
        ],
    )
    def test_noisy_drives(self, plaisir_net, sigma_m, rate_hz, path_min, timed_min):
        net = plaisir_net
        rng = np.random.default_rng(2024)
        paths, timed = [], []
        for _ in range(4):
            d = _drive(net, _random_route(net, rng), rng=rng, sigma_m=sigma_m, rate_hz=rate_hz)
            r = match(net, d["t"], d["x"], d["y"], params=MatchParams(sigma_m=sigma_m))
            assert not r.break_before.any()
            paths.append(_path_share(net, d, r))
            timed.append(_timed_share(net, d, r))
        assert np.mean(paths) >= path_min, paths
        assert np.mean(timed) >= timed_min, timed

    def test_tunnel_gap_connects(self, plaisir_net):
        net = plaisir_net
        rng = np.random.default_rng(5)
        d = _drive(net, _random_route(net, rng, 2000.0, 3000.0), rng=rng, sigma_m=3.0)
        keep = (d["t"] < 60.0) | (d["t"] >= 90.0)  # 30 s without fixes
        r = match(net, d["t"][keep], d["x"][keep], d["y"][keep], params=MatchParams(sigma_m=3.0))
        assert not r.break_before.any() and (r.segment >= 0).all()
        k = int(np.flatnonzero(r.t_s >= 90.0)[0])
        # The path across the gap follows the true route.
        driven = set(d["seg"][(d["t"] >= 59.0) & (d["t"] <= 91.0)].tolist())
        across = {int(r.segment[k - 1]), *r.via[k].tolist(), int(r.segment[k])}
        assert len(across & driven) >= 0.8 * len(driven)

    def test_leaving_network_breaks(self, plaisir_net):
        net = plaisir_net
        rng = np.random.default_rng(6)
        d = _drive(net, _random_route(net, rng, 2000.0, 3000.0), rng=rng, sigma_m=3.0)
        x, y = d["x"].copy(), d["y"].copy()
        off = (d["t"] >= 40.0) & (d["t"] < 80.0)  # 40 s in a car park far from any road
        x[off], y[off] = 700_000.0, 6_900_000.0
        r = match(net, d["t"], x, y, params=MatchParams(sigma_m=3.0))
        assert (r.segment[off] == -1).all()
        assert (r.segment[~off] >= 0).all()
        first_back = int(np.flatnonzero(~off & (d["t"] >= 80.0))[0])
        assert r.break_before.sum() == 1 and r.break_before[first_back]
        assert len(r.via[first_back]) == 0  # no invented path across the break

    def test_leaving_to_nearby_field_breaks(self, plaisir_net):
        net = plaisir_net
        rng = np.random.default_rng(16)
        d = _drive(net, _random_route(net, rng, 2000.0, 3000.0), rng=rng, sigma_m=3.0)
        x, y = d["x"].copy(), d["y"].copy()
        off = (d["t"] >= 40.0) & (d["t"] < 90.0)
        x[off] += 300.0  # 300 m aside
        r = match(net, d["t"], x, y, params=MatchParams(sigma_m=3.0))
        first_back = int(np.flatnonzero(d["t"] >= 90.0)[0])
        assert r.break_before[first_back] or r.break_before[off].any()
        assert all(len(r.via[k]) == 0 for k in np.flatnonzero(r.break_before))

    def test_single_outlier_dropped(self, plaisir_net):
        net = plaisir_net
        rng = np.random.default_rng(7)
        d = _drive(net, _random_route(net, rng), rng=rng, sigma_m=3.0)
        x, y = d["x"].copy(), d["y"].copy()
        k = 50
        x[k] += 200.0
        r = match(net, d["t"], x, y, params=MatchParams(sigma_m=3.0))
        assert r.segment[k] == -1 and np.isnan(r.offset_m[k]) and len(r.via[k]) == 0
        assert not r.break_before.any()
        assert (np.delete(r.segment, k) >= 0).all()
        # The path across the outlier is the true one.
        assert r.segment[k + 1] == d["seg"][k + 1] or r.segment[k + 1] in d["route"]

    def test_u_turn_at_dead_end(self, plaisir_net):
        net = plaisir_net
        two_way = np.flatnonzero(net.reverse >= 0)
        outdeg = np.array([len(o) for o in net.out_segments])
        dead = two_way[(outdeg[net.to_node[two_way]] == 1) & (net.length_m[two_way] > 120.0)]
        a = int(dead[np.argmax(net.length_m[dead])])
        route = _extend(net, [a], 150.0, 0.0)
        route = np.concatenate([route, [net.reverse[a]]])
        rng = np.random.default_rng(8)
        d = _drive(net, route, rng=rng, sigma_m=5.0, speed_mps=8.0)
        r = match(net, d["t"], d["x"], d["y"])
        back = d["seg"] == net.reverse[a]
        assert _fix_accuracy(r.segment, d["seg"], back) >= 0.85
        assert _fix_accuracy(r.segment, d["seg"], d["seg"] == a) >= 0.85

    def test_heading_picks_direction(self, plaisir_net):
        net = plaisir_net
        two_way = np.flatnonzero((net.reverse >= 0) & (net.length_m > 100.0))
        a = int(two_way[0])
        off = np.array([40.0, 41.0])  # nearly stationary: movement cannot tell
        x, y = net.point_at(np.array([a, a]), off)
        for seg in (a, int(net.reverse[a])):
            o = off if seg == a else net.length_m[seg] - off[::-1]
            h = net.heading_at(np.array([seg, seg]), o)
            xs, ys = net.point_at(np.array([seg, seg]), o)
            r = match(net, [0.0, 1.0], xs, ys, heading_deg=h)
            assert (r.segment == seg).all()

    @pytest.mark.parametrize("ring_seg", [3954, 3927, 4125])  # primary roundabouts
    def test_roundabout_beats_nearest_segment(self, plaisir_net, ring_seg):
        net = plaisir_net
        route, ring = _roundabout_route(net, ring_seg)
        rng = np.random.default_rng(ring_seg)
        d = _drive(net, route, rng=rng, sigma_m=5.0, speed_mps=9.0)
        r = match(net, d["t"], d["x"], d["y"])
        base = _nearest_segment(net, d["x"], d["y"])
        hmm_acc = _fix_accuracy(r.segment, d["seg"])
        base_acc = _fix_accuracy(base, d["seg"])
        assert _path_share(net, d, r) >= 0.95
        assert hmm_acc >= base_acc + 0.1, (hmm_acc, base_acc)
        in_ring = np.isin(d["seg"], list(ring))
        assert _fix_accuracy(r.segment, d["seg"], in_ring) > _fix_accuracy(base, d["seg"], in_ring)

    @pytest.mark.parametrize(
        "seg",
        [
            3421,  # D 30 dual carriageway, the other direction 8.7 m away
            3435,  # D 11 dual carriageway, 6.4 m
            4708,  # N 12 slip road (trunk_link) along the trunk, 5 m
        ],
    )
    def test_parallel_roads_beat_nearest_segment(self, plaisir_net, seg):
        net = plaisir_net
        route = _extend(net, [seg], 150.0, 150.0)
        rng = np.random.default_rng(seg)
        d = _drive(net, route, rng=rng, sigma_m=5.0, speed_mps=15.0)
        r = match(net, d["t"], d["x"], d["y"])
        base = _nearest_segment(net, d["x"], d["y"])
        on = d["seg"] == seg
        hmm_acc = _fix_accuracy(r.segment, d["seg"], on)
        base_acc = _fix_accuracy(base, d["seg"], on)
        assert hmm_acc >= 0.95
        assert hmm_acc >= base_acc + 0.1, (hmm_acc, base_acc)

    def test_accuracy_column_used(self, plaisir_net):
        net = plaisir_net
        rng = np.random.default_rng(9)
        d = _drive(net, _random_route(net, rng), rng=rng, sigma_m=12.0)
        acc = np.full(len(d["t"]), 12.0)
        r1 = match(net, d["t"], d["x"], d["y"], accuracy_m=acc)
        r2 = match(net, d["t"], d["x"], d["y"], params=MatchParams(sigma_m=12.0))
        assert r1.equals(r2)

    def test_read_only_input(self, plaisir_net):
        rng = np.random.default_rng(10)
        d = _drive(plaisir_net, _random_route(plaisir_net, rng), rng=rng)
        for a in (d["t"], d["x"], d["y"]):
            a.setflags(write=False)
        r = match(plaisir_net, d["t"], d["x"], d["y"])
        assert len(r) == len(d["t"])

    @pytest.mark.parametrize(
        ("kwargs", "exc", "pattern"),
        [
            ({"t_s": [0.0, 1.0], "x_m": [1.0], "y_m": [1.0, 2.0]}, ValueError, "x_m"),
            ({"t_s": [0.0, 0.0], "x_m": [1.0, 1.0], "y_m": [1.0, 2.0]}, ValueError, "t_s"),
            ({"t_s": [1.0, 0.5], "x_m": [1.0, 1.0], "y_m": [1.0, 2.0]}, ValueError, "t_s"),
            ({"t_s": [0.0, np.nan], "x_m": [1.0, 1.0], "y_m": [1.0, 2.0]}, ValueError, "t_s"),
            ({"t_s": [0.0, 1.0], "x_m": [1.0, np.inf], "y_m": [1.0, 2.0]}, ValueError, "x_m"),
            ({"t_s": [0.0, 1.0], "x_m": [1.0, 1.0], "y_m": [np.nan, 2.0]}, ValueError, "y_m"),
            ({"t_s": [0.0, 1.0], "x_m": [1.0, 1.0], "y_m": [1.0, 2.0],
              "heading_deg": [1.0]}, ValueError, "heading_deg"),
            ({"t_s": [0.0, 1.0], "x_m": [1.0, 1.0], "y_m": [1.0, 2.0],
              "accuracy_m": [1.0, -2.0]}, ValueError, "accuracy_m"),
            ({"t_s": ["a", "b"], "x_m": [1.0, 1.0], "y_m": [1.0, 2.0]}, TypeError, "t_s"),
        ],
    )
    def test_bad_input(self, plaisir_net, kwargs, exc, pattern):
        with pytest.raises(exc, match=pattern):
            match(plaisir_net, **kwargs)

    def test_bad_params(self):
        with pytest.raises(ValueError, match="sigma_m"):
            MatchParams(sigma_m=0.0)
        with pytest.raises(ValueError, match="max_lag_fixes"):
            MatchParams(max_lag_fixes=-1)

    def test_path_length_m(self, plaisir_net):
        net = plaisir_net
        assert path_length_m(net, 3, 1.0, [], 3, 4.0) == pytest.approx(3.0)
        via = np.array([5, 6])
        expect = net.length_m[3] - 1.0 + net.length_m[5] + net.length_m[6] + 2.0
        assert path_length_m(net, 3, 1.0, via, 7, 2.0) == pytest.approx(expect)


@pytest.fixture(scope="module")
def eventful(plaisir_net):
    """A noisy drive with an outlier, an excursion off the network and a tunnel gap."""
    net = plaisir_net
    rng = np.random.default_rng(12)
    d = _drive(net, _random_route(net, rng, 3000.0, 4000.0), rng=rng, sigma_m=8.0)
    x, y = d["x"].copy(), d["y"].copy()
    x[30] += 200.0
    off = (d["t"] >= 100.0) & (d["t"] < 130.0)
    x[off] += 5000.0
    keep = (d["t"] < 160.0) | (d["t"] >= 185.0)
    hd = np.full(len(x), np.nan)
    hd[::7] = 0.0  # a few (wrong) headings, to exercise the term
    return d["t"][keep], x[keep], y[keep], hd[keep]


class TestMatchOnline:
    @pytest.mark.parametrize("chunk", [1, 3, 7, 10_000])
    def test_chunked_equals_offline(self, plaisir_net, eventful, chunk):
        net = plaisir_net
        t, x, y, hd = eventful
        whole = match(net, t, x, y, hd)
        assert whole.break_before.any() and (whole.segment == -1).any()
        parts, state = [], None
        n = len(t)
        for i in range(0, n, chunk):
            sl = slice(i, i + chunk)
            r, state = match_online(net, t[sl], x[sl], y[sl], hd[sl], state=state,
                                    final=i + chunk >= n)
            parts.append(r)
        assert MatchResult.concat(parts).equals(whole)

    def test_lag_is_bounded(self, plaisir_net, eventful):
        net = plaisir_net
        t, x, y, hd = eventful
        p = MatchParams()
        state = None
        for i in range(len(t)):
            r, state = match_online(net, t[i : i + 1], x[i : i + 1], y[i : i + 1], state=state)
            assert state.n_undecided <= p.max_lag_fixes + 1 + p.max_outlier_fixes + 1
            assert len(state.to_bytes()) < 20_000

    def test_state_round_trip(self, plaisir_net, eventful):
        net = plaisir_net
        t, x, y, hd = eventful
        whole = match(net, t, x, y, hd)
        parts, state = [], None
        for i in range(0, len(t), 25):
            sl = slice(i, i + 25)
            if state is not None:
                state = MatchState.from_bytes(state.to_bytes())
            r, state = match_online(net, t[sl], x[sl], y[sl], hd[sl], state=state,
                                    final=i + 25 >= len(t))
            parts.append(r)
        assert MatchResult.concat(parts).equals(whole)

    def test_empty_call_keeps_state(self, plaisir_net, eventful):
        t, x, y, _ = eventful
        r1, st = match_online(plaisir_net, t[:10], x[:10], y[:10])
        r2, st2 = match_online(plaisir_net, [], [], [], state=st)
        assert len(r2) == 0 and st2.to_bytes() == st.to_bytes()

    def test_a_state_continued_twice_gives_the_same_result(self, plaisir_net, eventful):
        # The first continuation takes the running matcher; the second rebuilds it from
        # the state's arrays and must get exactly the same.
        t, x, y, _ = eventful
        _, st = match_online(plaisir_net, t[:20], x[:20], y[:20])
        r1, s1 = match_online(plaisir_net, t[20:30], x[20:30], y[20:30], state=st)
        r2, s2 = match_online(plaisir_net, t[20:30], x[20:30], y[20:30], state=st)
        r3, s3 = match_online(plaisir_net, t[20:30], x[20:30], y[20:30], state=MatchState.from_bytes(st.to_bytes()))
        assert r1.equals(r2) and r1.equals(r3)
        assert s1.to_bytes() == s2.to_bytes() == s3.to_bytes()

    def test_time_must_increase_across_calls(self, plaisir_net, eventful):
        t, x, y, _ = eventful
        _, st = match_online(plaisir_net, t[:10], x[:10], y[:10])
        with pytest.raises(ValueError, match="t_s"):
            match_online(plaisir_net, t[5:8], x[5:8], y[5:8], state=st)

    def test_state_from_other_network(self, plaisir_net, centre_net, eventful):
        t, x, y, _ = eventful
        _, st = match_online(plaisir_net, t[:10], x[:10], y[:10])
        with pytest.raises(ValueError, match="network"):
            match_online(centre_net, t[10:12], x[10:12], y[10:12], state=st)

    @pytest.mark.parametrize("data", [b"", b"nope", b"RSMM\x01\x00\x05"])
    def test_bad_state_bytes(self, data):
        with pytest.raises(ValueError):
            MatchState.from_bytes(data)


# --------------------------------------------------------------------------- odometer
class TestOdometer:
    @pytest.mark.parametrize(
        ("sigma_m", "share_min"),
        [
            (5.0, 0.97),  # the 1 Hz target of issue 3
            (15.0, 0.90),  # the noisy target of issue 3
        ],
    )
    def test_share_on_true_segment(self, plaisir_net, sigma_m, share_min):
        # The project's simulator (stops, speed-sensor scale error, headings, reported
        # accuracy, dropouts); test seed, neither the bench's nor the tuning one.
        fleet = simulate_fleet(plaisir_net, n_vehicles=6, seed=4242, gps_sigma_m=sigma_m)
        with_odo = _sim_share(plaisir_net, fleet, sigma_m, odometer=True)
        without = _sim_share(plaisir_net, fleet, sigma_m, odometer=False)
        assert with_odo >= share_min, (with_odo, without)
        assert with_odo >= without + 0.03, (with_odo, without)

    def test_noise_free_follows_odometer(self, plaisir_net):
        net = plaisir_net
        rng = np.random.default_rng(3034)
        d = _drive(net, _random_route(net, rng), rng=rng, sigma_m=0.0, stops=2)
        r = match(net, d["t"], d["x"], d["y"], odometer_m=d["odo"])
        assert (r.segment >= 0).all() and not r.break_before.any()
        _check_path(net, r)
        steps = [path_length_m(net, r.segment[k - 1], r.offset_m[k - 1], r.via[k],
                               r.segment[k], r.offset_m[k]) for k in range(1, len(r))]
        np.testing.assert_allclose(steps, np.diff(d["odo"]), atol=0.5)
        assert _fix_accuracy(r.segment, d["seg"]) >= 0.98

    def test_stops_add_no_detour(self, plaisir_net):
        # Without odometer, the fixes scattered around a stop at a junction wander into
        # the side streets (out-and-back detours); the odometer says the car stood still.
        net = plaisir_net
        rng = np.random.default_rng(3036)
        d = _drive(net, _random_route(net, rng), rng=rng, sigma_m=5.0, stops=3, stop_s=40.0)

        def excess_m(r):
            m = np.flatnonzero(r.segment >= 0)
            assert not r.break_before.any()
            total = sum(path_length_m(net, r.segment[p], r.offset_m[p], r.via[k],
                                      r.segment[k], r.offset_m[k])
                        for p, k in zip(m[:-1], m[1:]))
            return total - (d["odo"][m[-1]] - d["odo"][m[0]])

        with_odo = excess_m(match(net, d["t"], d["x"], d["y"], odometer_m=d["odo"]))
        without = excess_m(match(net, d["t"], d["x"], d["y"]))
        assert abs(with_odo) < 0.01 * d["odo"][-1] and without > 5 * abs(with_odo)

    def test_empty(self, plaisir_net):
        r = match(plaisir_net, [], [], [], odometer_m=[])
        assert len(r) == 0

    @pytest.mark.parametrize(
        ("odo", "pattern"),
        [
            ([0.0, 5.0], "odometer_m has length 2"),  # wrong length
            ([0.0, 5.0, 4.0], "non-decreasing"),  # decreasing
            ([0.0, np.nan, 8.0], "odometer_m must be finite"),  # NaN
            ([0.0, np.inf, 8.0], "odometer_m must be finite"),  # inf
            ([[0.0, 1.0, 2.0]], "odometer_m must be 1-D"),  # 2-D
        ],
    )
    def test_bad_odometer(self, plaisir_net, odo, pattern):
        x, y = plaisir_net.point_at([10, 10, 10], [5.0, 15.0, 25.0])
        with pytest.raises(ValueError, match=pattern):
            match(plaisir_net, [0.0, 1.0, 2.0], x, y, odometer_m=odo)

    def test_bad_odometer_type(self, plaisir_net):
        with pytest.raises(TypeError, match="odometer_m"):
            match(plaisir_net, [0.0], [1.0], [1.0], odometer_m=["a"])

    def test_odometer_across_calls(self, plaisir_net):
        net = plaisir_net
        x, y = net.point_at([10, 10, 10, 10], [5.0, 15.0, 25.0, 35.0])
        _, st = match_online(net, [0.0, 1.0], x[:2], y[:2], odometer_m=[0.0, 10.0])
        with pytest.raises(ValueError, match="odometer_m must be non-decreasing across"):
            match_online(net, [2.0], x[2:3], y[2:3], state=st, odometer_m=[9.0])
        with pytest.raises(ValueError, match="odometer_m must be given in every call"):
            match_online(net, [2.0], x[2:3], y[2:3], state=st)
        _, st0 = match_online(net, [0.0, 1.0], x[:2], y[:2])
        with pytest.raises(ValueError, match="odometer_m must be given in every call"):
            match_online(net, [2.0], x[2:3], y[2:3], state=st0, odometer_m=[20.0])

    @pytest.mark.parametrize("chunk", [1, 4, 11, 10_000])
    def test_chunked_equals_offline(self, plaisir_net, eventful_odo, chunk):
        net = plaisir_net
        t, x, y, hd, odo = eventful_odo
        whole = match(net, t, x, y, hd, odometer_m=odo)
        assert whole.break_before.any() and (whole.segment == -1).any()
        _check_path(net, whole)
        parts, state = [], None
        for i in range(0, len(t), chunk):
            sl = slice(i, i + chunk)
            r, state = match_online(net, t[sl], x[sl], y[sl], hd[sl], state=state,
                                    final=i + chunk >= len(t), odometer_m=odo[sl])
            parts.append(r)
        assert MatchResult.concat(parts).equals(whole)

    def test_state_round_trip_and_lag(self, plaisir_net, eventful_odo):
        net = plaisir_net
        t, x, y, hd, odo = eventful_odo
        p = MatchParams()
        whole = match(net, t, x, y, hd, odometer_m=odo)
        parts, state = [], None
        for i in range(len(t)):
            sl = slice(i, i + 1)
            if state is not None:
                state = MatchState.from_bytes(state.to_bytes())
            r, state = match_online(net, t[sl], x[sl], y[sl], hd[sl], state=state,
                                    final=i + 1 == len(t), odometer_m=odo[sl])
            parts.append(r)
            # decision lag + outliers + smoothing window + one stop's merged fixes
            assert state.n_undecided <= (p.max_lag_fixes + 2 + p.max_outlier_fixes
                                         + p.smooth_ahead_fixes + p.max_stop_fixes)
            assert len(state.to_bytes()) < 40_000
        assert state.n_undecided == 0
        assert MatchResult.concat(parts).equals(whole)


@pytest.fixture(scope="module")
def eventful_odo(plaisir_net):
    """The eventful drive with two stops and its odometer (1 % scale error)."""
    net = plaisir_net
    rng = np.random.default_rng(13)
    d = _drive(net, _random_route(net, rng, 3000.0, 4000.0), rng=rng, sigma_m=8.0, stops=2,
               odo_scale=1.01)
    x, y = d["x"].copy(), d["y"].copy()
    x[30] += 200.0
    off = (d["t"] >= 100.0) & (d["t"] < 130.0)
    x[off] += 5000.0
    keep = (d["t"] < 160.0) | (d["t"] >= 185.0)
    hd = np.full(len(x), np.nan)
    hd[::7] = 0.0
    return d["t"][keep], x[keep], y[keep], hd[keep], d["odo"][keep]


# ------------------------------------------------ compiled transition matrix (fifteenth session)
# The matcher's transition matrix and the route table lookup are numba kernels; the NumPy
# formulations they replaced are kept here, unchanged but for their names, as the oracles.
def numpy_transition(self, a, f) -> np.ndarray:
    """(len(a.seg), len(f.seg)) log transition probabilities; -inf = impossible."""
    net = self.net
    straight = float(np.hypot(f.x - a.x, f.y - a.y))
    limit = self._limit(a, f, straight)
    sa, oa, sb, ob = a.seg, a.off, f.seg, f.off
    rest = net.length_m[sa] - oa
    d = self.router.distances(net.to_node[sa], net.from_node[sb], limit)
    route = rest[:, None] + d + ob[None, :]
    tol = self._tol(a.sigma, f.sigma)
    fwd = (sa[:, None] == sb[None, :]) & (ob[None, :] >= oa[:, None] - tol)
    route = np.where(fwd, np.maximum(ob[None, :] - oa[:, None], 0.0), route)
    # Straight line between the candidates' points (not the noisy fixes): a detour,
    # loop or U-turn then costs its extra length, whatever the GPS noise.
    uturn = net.reverse[sa][:, None] == sb[None, :]
    if np.isfinite(a.odo) and np.isfinite(f.odo):
        # Odometer: the route should be as long as the distance driven. On one
        # segment the signed move is compared (jitter backwards while stopped costs
        # its length, not zero).
        route = np.where(fwd, ob[None, :] - oa[:, None], route)
        dev = np.abs(route - (f.odo - a.odo)) + self.p.uturn_penalty_m * uturn
        logt = -dev / max(self.p.odo_beta_m, a.sigma, f.sigma)
    else:
        # Straight line between the candidates' points (not the noisy fixes): a
        # detour, loop or U-turn then costs its extra length, whatever the GPS noise.
        xa, ya = net.point_at(sa, oa)
        xb, yb = net.point_at(sb, ob)
        gc = np.hypot(xb[None, :] - xa[:, None], yb[None, :] - ya[:, None])
        dev = np.abs(route - gc) + self.p.uturn_penalty_m * uturn
        logt = -dev / max(self.p.beta_m, a.sigma, f.sigma)
    logt[~(route <= limit)] = -np.inf
    # float32: a log-probability needs no more, and the matcher's state (which holds
    # these matrices for the undecided window) halves; rounded here, when computed,
    # so a restored state and a running matcher see the same values.
    return logt.astype(np.float32)


def numpy_table_distances(router, src, dst, limit_m):
    keys, dist = router._pairs()
    n = router.net.graph.shape[0]
    q = (np.asarray(src, np.int64)[:, None] * n + np.asarray(dst, np.int64)[None, :]).ravel()
    pos = np.minimum(np.searchsorted(keys, q), keys.size - 1)
    out = np.where(keys[pos] == q, dist[pos], np.inf).reshape(len(src), len(dst))
    out[out > limit_m] = np.inf
    return out


def _candidates_near(net, rng, s0, k):
    """``k`` candidate segments around ``s0``: itself, its reverse, the segments after it,
    and a few anywhere; offsets anywhere along them (m)."""
    after = np.flatnonzero(net.from_node == net.to_node[s0])
    pool = [s0, s0, int(net.reverse[s0]) if net.reverse[s0] >= 0 else s0, *after.tolist(),
            *rng.integers(0, net.length_m.size, 3).tolist()]
    seg = np.asarray(rng.choice(pool, k), np.int64)
    return seg, rng.uniform(0.0, 1.0, k) * net.length_m[seg]


@pytest.mark.parametrize("seed", range(4))
def test_transition_is_the_numpy_formulation(plaisir_net, seed):
    from types import SimpleNamespace

    from agents.map_matching import _Matcher

    net = plaisir_net
    m = _Matcher(net, MatchParams(), None)
    rng = np.random.default_rng(seed)
    checked = set()
    for _ in range(150):
        s0 = int(rng.integers(0, net.length_m.size))
        sa, oa = _candidates_near(net, rng, s0, int(rng.integers(1, 7)))
        sb, ob = _candidates_near(net, rng, s0, int(rng.integers(1, 7)))
        dt = float(rng.choice([1.0, 2.0, 30.0]))  # 30 s: a limit past the route table's 400 m
        odo_a = float(rng.uniform(0.0, 5e3))
        odos = [(odo_a, odo_a + float(rng.uniform(-5.0, 400.0))), (np.nan, np.nan), (odo_a, np.nan)]
        odo = odos[int(rng.integers(0, 3))]
        xy = rng.uniform(-300.0, 300.0, 4)
        a = SimpleNamespace(t=100.0, x=xy[0], y=xy[1], sigma=float(rng.uniform(2, 15)), seg=sa, off=oa,
                            odo=odo[0])  # fmt: skip
        f = SimpleNamespace(t=100.0 + dt, x=xy[2], y=xy[3], sigma=float(rng.uniform(2, 15)), seg=sb, off=ob,
                            odo=odo[1])  # fmt: skip
        want, got = numpy_transition(m, a, f), m._transition(a, f)
        assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
        assert np.array_equal(got.view(np.int32), want.view(np.int32))
        limit = m._limit(a, f, float(np.hypot(f.x - a.x, f.y - a.y)))
        checked |= {
            ("odo", bool(np.isfinite(a.odo) and np.isfinite(f.odo))),
            ("table", limit <= m.router.min_limit_m),
            ("finite", bool(np.isfinite(want).any())),
            ("impossible", bool(np.isinf(want).any())),
        }
    # every branch was taken: with and without the odometer, the table and the rows, both outcomes
    assert {k for k, v in checked if v} == {"odo", "table", "finite", "impossible"} and len(checked) == 8


def test_table_distances_are_the_numpy_lookup(plaisir_net):
    from agents._routes import Router

    router = Router.of(plaisir_net)
    rng = np.random.default_rng(5)
    n = plaisir_net.graph.shape[0]
    for limit in (0.5, 50.0, 150.0, 399.0, 400.0):
        src = rng.integers(0, n, 7)
        dst = np.r_[src[:3], rng.integers(0, n, 5)]  # a node to itself (0 m) and others
        got = router.distances(src, dst, limit)
        assert np.array_equal(got, numpy_table_distances(router, src, dst, limit))
    assert np.isfinite(got).any() and np.isinf(got).any()


def numpy_viterbi_column(prev, trans, emis):
    """The NumPy Viterbi step the matcher ran before ``_viterbi_column`` (the oracle)."""
    with np.errstate(invalid="ignore"):  # -inf - -inf: the oracle's NaN cases
        tot = prev[:, None] + trans
        back = np.argmax(tot, axis=0)
        best = tot[back, np.arange(trans.shape[1])]
        score = best + emis
        score -= score.max()
    return back, score, bool(np.isfinite(best).any())


@pytest.mark.parametrize("seed", range(3))
def test_viterbi_column_is_the_numpy_formulation(seed):
    from agents.map_matching import _viterbi_column

    rng = np.random.default_rng(seed)
    seen = set()
    for _ in range(400):
        p, q = (int(v) for v in rng.integers(1, 7, 2))
        prev = rng.normal(-3.0, 3.0, p)
        prev[rng.random(p) < 0.3] = -np.inf
        prev[int(rng.integers(0, p))] = 0.0
        if rng.random() < 0.1:
            prev[int(rng.integers(0, p))] = np.nan  # a column no path reached, pinned again
        trans = rng.normal(-2.0, 2.0, (p, q)).astype(np.float32)
        trans[rng.random((p, q)) < 0.4] = -np.inf
        if rng.random() < 0.2:
            trans[:] = -np.inf
        emis = rng.normal(-1.0, 1.0, q)
        # equal scores: the first of them wins, as np.argmax
        if rng.random() < 0.3:
            prev[:] = 0.0
            trans[:] = np.float32(-1.0)
        want, got = numpy_viterbi_column(prev, trans, emis), _viterbi_column(prev, trans, emis)
        assert np.array_equal(got[0], want[0])
        assert np.array_equal(got[1].view(np.int64), want[1].view(np.int64))  # bits, NaN included
        assert got[2] == want[2]
        seen |= {("reachable", want[2]), ("nan", bool(np.isnan(want[1]).any())), ("tie", bool((trans == -1).all()))}
    assert seen == {(k, v) for k in ("reachable", "nan", "tie") for v in (True, False)}


# ------------------------------------------------ plain-Python forms of small NumPy steps
def numpy_follower_emission(seg, f_seg, f_emis, floor):
    """The NumPy formulation ``_Matcher._follow`` used before ``_follower_emission`` (the oracle)."""
    eq = seg[:, None] == f_seg[None, :]
    return np.where(eq.any(axis=1), f_emis[eq.argmax(axis=1)], floor)


@pytest.mark.parametrize("seed", range(3))
def test_follower_emission_is_the_numpy_formulation(seed):
    from agents.map_matching import _follower_emission

    rng = np.random.default_rng(seed)
    seen = set()
    for _ in range(300):
        seg = rng.integers(0, 12, int(rng.integers(1, 17)))
        f_seg = rng.integers(0, 12, int(rng.integers(1, 17)))  # repeats: the first one counts
        f_emis = rng.normal(-3.0, 3.0, f_seg.size)
        floor = float(rng.choice([f_emis.min(), -50.0]))
        want = numpy_follower_emission(seg, f_seg, f_emis, floor)
        got = _follower_emission(seg, f_seg, f_emis, floor)
        assert got.dtype == want.dtype and np.array_equal(got.view(np.int64), want.view(np.int64))
        seen |= {("own", bool(np.isin(seg, f_seg).any())), ("floor", bool((~np.isin(seg, f_seg)).any()))}
    assert seen == {(k, v) for k in ("own", "floor") for v in (True, False)}


def numpy_encode(fields):
    """The state encoding as ``MatchState.to_bytes`` wrote it from NumPy arrays (the oracle)."""
    import struct

    from agents.map_matching import _FIELDS, _MAGIC, _VERSION

    parts = [_MAGIC, struct.pack("<H", _VERSION)]
    for name, dt in _FIELDS:
        a = np.ascontiguousarray(np.array(fields[name], dtype=dt[1:]), dtype=dt)
        parts.append(struct.pack("<I", a.size))
        parts.append(a.tobytes())
    return b"".join(parts)


@pytest.mark.parametrize("seed", range(3))
def test_state_encoding_is_the_numpy_one(seed):
    from agents.map_matching import _FIELDS, _encode

    rng = np.random.default_rng(seed)
    specials = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, 5e-324]
    for _ in range(200):
        fields = {}
        for name, dt in _FIELDS:
            n = int(rng.choice([0, 1, 2, 7, 40]))
            if dt in ("<i8", "<i4"):
                v = rng.integers(-(2**31), 2**31, n).tolist()
                if n and dt == "<i8":
                    v[0] = [2**62, -(2**62), True, False][int(rng.integers(0, 4))]  # bools: the flags
            else:
                v = rng.normal(0.0, 1e3, n).tolist()
                if n:
                    v[int(rng.integers(0, n))] = float(rng.choice(specials[: 5 if dt == "<f4" else None]))
            # arrays as the matcher passes them: float64 pieces, float32 transitions
            if dt == "<f4" or (dt == "<f8" and rng.random() < 0.3):
                v = np.asarray(v, np.float32 if dt == "<f4" else float)
            fields[name] = v
        assert _encode(fields) == numpy_encode(fields)


def test_state_bytes_decode_to_the_same_state(plaisir_net, eventful_odo):
    # every state along an eventful drive: its bytes decode to arrays that encode back to
    # the same bytes, and n_seen (read from the bytes) is the arrays' count
    t, x, y, hd, odo = eventful_odo
    state = None
    for i in range(len(t)):
        _, state = match_online(plaisir_net, t[i : i + 1], x[i : i + 1], y[i : i + 1], hd[i : i + 1], state=state,
                                odometer_m=odo[i : i + 1])
        data = state.to_bytes()
        back = MatchState.from_bytes(data)
        assert back.to_bytes() == data and numpy_encode(back.arrays) == data
        assert state.n_seen == back.n_seen == int(back.arrays["meta"][2]) == i + 1


def test_table_distances_by_row_are_the_numpy_lookup(plaisir_net):
    # reachable pairs (taken from the table), unreachable ones, the first and last nodes
    # (rows at the ends of the keys) and a node to itself, on the real table and on a
    # small one with empty rows
    from agents._routes import Router, _table_distances

    router = Router.of(plaisir_net)
    keys, dist = router._pairs()
    n = plaisir_net.graph.shape[0]
    rng = np.random.default_rng(6)
    seen = set()
    for _ in range(200):
        src = np.r_[rng.integers(0, n, int(rng.integers(1, 6))), rng.choice([0, n - 1], 1)].astype(np.int64)
        own = keys[np.flatnonzero(keys // n == src[0])] % n
        dst = np.r_[rng.choice(own, min(4, own.size)) if own.size else [], src[:2], rng.integers(0, n, 3),
                    rng.choice([0, n - 1], 1)].astype(np.int64)
        limit = float(rng.choice([0.5, 50.0, 150.0, 400.0]))
        want = numpy_table_distances(router, src, dst, limit)
        got = _table_distances(src, dst, keys, dist, n, limit)
        assert np.array_equal(got, want)
        seen |= {("finite", bool(np.isfinite(want).any())), ("inf", bool(np.isinf(want).any()))}
    assert seen == {("finite", True), ("inf", True)}
    # a 5-node table: node 1 and 4 have no row, node 0's row is first, node 3's last
    m = 5
    pairs = np.array([[0, 0], [0, 2], [0, 4], [2, 2], [2, 1], [3, 0], [3, 3], [3, 4]])
    k = np.sort(pairs[:, 0] * m + pairs[:, 1])
    d = np.arange(k.size, dtype=float) * 10.0
    src, dst = np.arange(m, dtype=np.int64), np.arange(m, dtype=np.int64)
    q = src[:, None] * m + dst[None, :]
    pos = np.minimum(np.searchsorted(k, q), k.size - 1)
    for limit in (0.0, 25.0, 1e3):
        want = np.where(k[pos] == q, d[pos], np.inf)
        want[want > limit] = np.inf
        assert np.array_equal(_table_distances(src, dst, k, d, m, limit), want)
