"""Benchmark of agents.map_matching on synthetic drives over the real Plaisir network.

Drives follow random shortest routes (1.5-4 km) at ~13 m/s, slowing to a third near
turns, sampled at 1 Hz or 0.2 Hz with Gaussian noise sigma per axis. Seeds are the
bench's own (the unit tests use others). Per setting it reports, along the true path
sampled every 1 m of driven distance:

- ``share_true``: the matched position *at the same time* (interpolated along the
  matched path between fixes) is on the true segment; bounded by along-track GPS noise;
- ``path_share``: the true segment is on the matched path (the roads were found);
- ``fix_acc``: share of fixes matched to their true segment;

and the throughput in fixes matched per second (offline ``match``, one core).
Prints a table, then ONE JSON line.

Run: ``.venv/bin/python bench/map_matching.py [--drives N]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy.sparse.csgraph import connected_components

from agents.map_matching import MatchParams, match
from roadnet import load_network

SEED = 90_210


def main_nodes(net):
    _, lab = connected_components(net.graph, directed=True, connection="strong")
    return np.flatnonzero(lab == np.argmax(np.bincount(lab)))


def random_route(net, rng, nodes, min_m=1500.0, max_m=4000.0):
    while True:
        a, b = rng.choice(nodes, 2, replace=False)
        r = net.route(int(a), int(b))
        if r and min_m <= net.length_m[r].sum() <= max_m:
            return np.asarray(r, np.int64)


def drive(net, route, *, rng, sigma_m, rate_hz, speed_mps=13.0):
    """Noisy fixes along ``route`` and the 1 m truth grid (times, segments)."""
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
    tf = np.arange(0.0, t[-1], 1.0 / rate_hz)
    sf = np.interp(tf, t, s)
    kf = np.clip(np.searchsorted(cum, sf, "right") - 1, 0, len(route) - 1)
    x, y = net.point_at(route[kf], sf - cum[kf])
    x = x + rng.normal(0.0, sigma_m, len(x))
    y = y + rng.normal(0.0, sigma_m, len(y))
    return {"t": tf, "x": x, "y": y, "seg": route[kf], "grid_t": t, "grid_seg": route[k],
            "route": route}


def timed_share(net, d, r):
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


def path_share(net, d, r):
    matched = set(r.segment[r.segment >= 0].tolist())
    for v in r.via:
        matched.update(v.tolist())
    on = np.array([s in matched for s in d["route"]])
    return float(net.length_m[d["route"]][on].sum() / net.length_m[d["route"]].sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drives", type=int, default=20, help="drives per setting")
    args = ap.parse_args()
    net = load_network()
    nodes = main_nodes(net)
    settings = [(3.0, 1.0), (5.0, 1.0), (10.0, 1.0), (15.0, 1.0), (5.0, 0.2)]
    out: dict[str, float] = {}
    n_fix, t_match = 0, 0.0
    print(f"{'sigma_m':>7} {'rate_hz':>7} {'share_true':>10} {'path_share':>10} "
          f"{'fix_acc':>7} {'breaks':>6} {'fixes/s':>8}")
    for sigma, hz in settings:
        rng = np.random.default_rng([SEED, int(sigma * 10), int(hz * 10)])
        sh, ps, fa, nb, nf, tm = [], [], [], 0, 0, 0.0
        params = MatchParams(sigma_m=sigma)
        for _ in range(args.drives):
            d = drive(net, random_route(net, rng, nodes), rng=rng, sigma_m=sigma, rate_hz=hz)
            t0 = time.perf_counter()
            r = match(net, d["t"], d["x"], d["y"], params=params)
            tm += time.perf_counter() - t0
            nf += len(d["t"])
            sh.append(timed_share(net, d, r))
            ps.append(path_share(net, d, r))
            fa.append(float(np.mean(r.segment == d["seg"])))
            nb += int(r.break_before.sum())
        n_fix += nf
        t_match += tm
        key = f"sigma{sigma:g}_{'1hz' if hz == 1.0 else '0p2hz'}"
        out[f"share_true_{key}"] = round(float(np.mean(sh)), 4)
        out[f"path_share_{key}"] = round(float(np.mean(ps)), 4)
        out[f"fix_acc_{key}"] = round(float(np.mean(fa)), 4)
        print(f"{sigma:7g} {hz:7g} {np.mean(sh):10.3f} {np.mean(ps):10.3f} "
              f"{np.mean(fa):7.3f} {nb:6d} {nf / tm:8.0f}")
    out["fixes_per_s"] = round(n_fix / t_match, 1)
    out["drives_per_setting"] = args.drives
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
