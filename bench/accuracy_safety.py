"""Accuracy of the safety service (issue 6): events, hotspots, before/after.

For each seed, a fleet is simulated with a safety scenario (:mod:`simulator.hotspots`:
background events everywhere, ten hotspots, one busy junction "fixed" half-way through the
period with its rate halved; grade, mounting misalignment, noise, pothole and hump
impacts), then:

1. **events**: ``agents.harsh_events.detect_harsh_events`` runs on each trip's samples
   (speed and ABS given); detections are matched to the simulator's truth (same type,
   intervals overlapping within 0.5 s, one-to-one). Marginal injected events (the truth
   says they barely crossed the definition) are neither required nor counted as false.
   Any unmatched detection within 1 s of a pothole or hump crossing is an impact counted
   as an event.
2. **hotspots**: detected events are placed on their segment by the odometer (speed
   integrated from the pass entry), the first/last 300 m of each trip are dropped like the
   pipeline's privacy trim, passes are counted per segment, and
   ``agents.hotspots.rank_hotspots`` ranks zones. A top-10 zone is a hit when it lies
   within 80 m of an injected hotspot (a hotspot listed twice counts twice in the
   precision, once in the recall). The five busiest non-hotspot arterial zones must
   not be in the top 10. The ranking's default suppression of neighbouring zones
   (``suppress_m``) is compared with none (``*_no_suppression``, same inputs).
3. **before/after**: ``agents.before_after.before_after`` at the fixed junction (rate
   halved: power) and, with no change (false positives), at every other hotspot and at
   the five top-ranked non-hotspot zones of the before period (chosen *because* their
   before-rate is high: the regression-to-the-mean trap). Priors come from a ranking of
   the before period.

The rough-road vertical body response (quarter car at 1 kHz) is replaced by zeros unless
``--full-vertical``: the harsh detector does not read the vertical axis, and the impacts
that matter here (with their longitudinal shocks) come from :mod:`simulator.impacts`.

Tuning seeds were 1-10; the default reporting seeds are 101-104. Ends by printing one JSON
line. Usage: ``python bench/accuracy_safety.py [--seeds 101 102] [--vehicles 1000]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.before_after import before_after, before_after_sites  # noqa: E402
from agents.harsh_events import EVENT_TYPES, detect_harsh_events  # noqa: E402
from agents.hotspots import attribute_events, rank_hotspots, zoning  # noqa: E402
from roadnet import load_network  # noqa: E402
from schemas.tracefile import TRIP_GAP_S  # noqa: E402

TRIM_M = 300.0
MATCH_TOL_S = 0.5
HIT_M = 80.0
ARTERIALS = ("trunk", "primary", "secondary", "tertiary")
RANK_BY = "mean"


def run_seed(seed: int, n_vehicles: int, full_vertical: bool, fs_hz: float = 50.0, days: float = 28.0) -> dict:
    import simulator.fleet as fleet_mod
    from simulator.fleet import DEFAULT_START, simulate_fleet
    from simulator.hotspots import SafetyScenario, choose_hotspots

    if not full_vertical:
        fleet_mod.vertical_response = lambda t_s, *a, **k: np.zeros(len(t_s))  # type: ignore[assignment]
    net = load_network()
    t_start = DEFAULT_START.timestamp()
    date = t_start + days * 86400 / 2
    hs = choose_hotspots(net, seed=seed, fixed_at_s=date, fix_factor=0.5)
    fl = simulate_fleet(
        net, n_vehicles=n_vehicles, seed=seed, fs_hz=fs_hz, trips_per_vehicle=2,
        departure_spread_s=days * 86400 - 4 * 3600, safety=SafetyScenario(hotspots=hs),
    )  # fmt: skip
    truth, E, imp = fl.truth, fl.truth.events, fl.truth.impacts
    counts: Counter = Counter()
    fp_examples: list = []
    det_rows: list[tuple] = []  # (vehicle, type, t, segment, offset, trip distance ok)
    pass_rows: list[tuple] = []
    for vid, tr in fl.traces.items():
        trips = np.split(np.arange(len(tr.t_s)), np.flatnonzero(np.diff(tr.t_s) > TRIP_GAP_S) + 1)
        dets = []
        for idx in trips:
            ab = None if tr.abs_engaged is None else tr.abs_engaged[idx]
            ev, _ = detect_harsh_events(
                tr.accel_long_mps2[idx], tr.accel_lat_mps2[idx], tr.t_s[idx], fs_hz,
                speed_kmh=tr.speed_kmh[idx], abs_engaged=ab, final=True,
            )  # fmt: skip
            dets += ev
        # ---- event matching
        m = E["vehicle_id"] == vid
        tt, ts, td, tc = E["type"][m], E["start_t_s"][m], E["duration_s"][m], E["clear"][m]
        used = np.zeros(len(tt), bool)
        imp_t = imp["t_s"][imp["vehicle_id"] == vid] if len(imp.get("t_s", [])) else np.zeros(0)
        for e in dets:
            ok = (tt == e.type) & ~used & (ts - MATCH_TOL_S <= e.start_t_s + e.duration_s) & (e.start_t_s - MATCH_TOL_S <= ts + td)
            if ok.any():
                k = np.flatnonzero(ok)[np.argmin(np.abs(ts[ok] - e.start_t_s))]
                used[k] = True
                counts[(e.type, "tp" if tc[k] else "ignored")] += 1
            else:
                counts[(e.type, "fp")] += 1
                near = [(str(tt[j]), round(float(ts[j] - e.start_t_s), 1)) for j in np.flatnonzero(np.abs(ts - e.start_t_s) < 4)]
                fp_examples.append((vid, e.type, round(e.start_t_s - tr.t_s[0], 1), round(e.duration_s, 2),
                                    round(e.peak_mps2, 2), round(e.speed_kmh, 1), near))  # fmt: skip
                if len(imp_t) and np.min(np.abs(imp_t - e.start_t_s)) < 1.0 + e.duration_s:
                    counts["impact_counted"] += 1
        for k in np.flatnonzero(~used & tc):
            counts[(tt[k], "fn")] += 1
        # ---- odometer placement and privacy trim
        d = np.concatenate([[0.0], np.cumsum(0.5 * (tr.speed_kmh[1:] + tr.speed_kmh[:-1]) / 3.6 * np.diff(tr.t_s))])
        p = truth.passes_of(vid)
        for trip_i, idx in enumerate(trips):
            lo_d, hi_d = d[idx[0]], d[idx[-1]]
            pm = p["trip"] == trip_i
            d_in = np.interp(p["entry_t_s"][pm], tr.t_s, d)
            d_out = np.interp(p["exit_t_s"][pm], tr.t_s, d)
            keep = (d_in - lo_d >= TRIM_M) & (hi_d - d_out >= TRIM_M)
            for s_, te in zip(p["segment"][pm][keep], p["entry_t_s"][pm][keep]):
                pass_rows.append((int(s_), float(te)))
            for e in dets:
                if not tr.t_s[idx[0]] <= e.start_t_s <= tr.t_s[idx[-1]]:
                    continue
                de = float(np.interp(e.start_t_s, tr.t_s, d))
                if de - lo_d < TRIM_M or hi_d - de < TRIM_M:
                    continue
                j = np.flatnonzero(pm & (p["entry_t_s"] <= e.start_t_s))
                if len(j) == 0:
                    continue
                j = j[-1]
                off = p["entry_offset_m"][j] + de - float(np.interp(p["entry_t_s"][j], tr.t_s, d))
                seg = int(p["segment"][j])
                det_rows.append((e.type, e.start_t_s, seg, float(np.clip(off, 0.0, net.length_m[seg]))))

    # ---- hotspot ranking over the whole period
    ps = np.array([r[0] for r in pass_rows], np.int64)
    pt = np.array([r[1] for r in pass_rows])
    ev_t = np.array([r[1] for r in det_rows])
    ev_seg = np.array([r[2] for r in det_rows], np.int64)
    ev_off = np.array([r[3] for r in det_rows])
    n_all = np.bincount(ps, minlength=len(net)).astype(float)
    rk = rank_hotspots(n_all, ev_seg, ev_off, net, rank_by=RANK_BY)
    zn = zoning(net)
    hx = np.array([h.x_m for h in hs])
    hy = np.array([h.y_m for h in hs])

    def hotspot_of(zone: int) -> int:
        dist = np.hypot(zn.zone_x_m[zone] - hx, zn.zone_y_m[zone] - hy)
        return int(np.argmin(dist)) if dist.min() <= HIT_M else -1

    top = [int(z) for z in rk.zone[:10]]
    hit = [hotspot_of(z) for z in top]
    precision = float(np.mean([h >= 0 for h in hit]))
    recall = len({h for h in hit if h >= 0}) / len(hs)
    # the same inputs without non-maximum suppression of neighbouring zones, for comparison
    hit0 = [hotspot_of(int(z)) for z in rank_hotspots(n_all, ev_seg, ev_off, net, rank_by=RANK_BY, suppress_m=0.0).zone[:10]]
    precision0 = float(np.mean([h >= 0 for h in hit0]))
    recall0 = len({h for h in hit0 if h >= 0}) / len(hs)
    passes_z, _ = zn.exposure(n_all)
    art = [z for z in np.argsort(-passes_z) if zn.zone_class[z] in ARTERIALS and hotspot_of(int(z)) < 0][:5]
    busy_in_top = int(sum(z in top for z in art))

    # ---- before/after
    before = pt < date
    _, vkm_b = zn.exposure(np.bincount(ps[before], minlength=len(net)))
    _, vkm_a = zn.exposure(np.bincount(ps[~before], minlength=len(net)))
    ev_zone = attribute_events(zn, ev_seg, ev_off)
    eb_before = ev_t < date
    rk_b = rank_hotspots(np.bincount(ps[before], minlength=len(net)).astype(float), ev_seg[eb_before], ev_off[eb_before], net)
    prior = {int(z): (a, b) for z, a, b in zip(rk_b.zone, rk_b.prior_alpha, rk_b.prior_beta)}

    def study(zone: int) -> dict:
        a, b = prior.get(zone, (0.0, 0.0))
        r = before_after(
            int(np.sum((ev_zone == zone) & eb_before)), max(vkm_b[zone], 1e-9),
            int(np.sum((ev_zone == zone) & ~eb_before)), max(vkm_a[zone], 1e-9), prior_alpha=a, prior_beta=b,
        )  # fmt: skip
        return r.as_dict()

    def zone_of_hotspot(k: int) -> int:
        dist = np.hypot(zn.zone_x_m - hx[k], zn.zone_y_m - hy[k])
        return int(np.argmin(np.where(zn.zone_kind == ("segment" if hs[k].kind == "school_zone" else "junction"), dist, np.inf)))

    fixed = [zone_of_hotspot(k) for k, h in enumerate(hs) if h.fixed_at_s is not None]
    pr = np.array([prior.get(z, (0.0, 0.0)) for z in fixed])
    power_trial = before_after_sites(
        np.array([np.sum((ev_zone == z) & eb_before) for z in fixed]), np.maximum(vkm_b[fixed], 1e-9),
        np.array([np.sum((ev_zone == z) & ~eb_before) for z in fixed]), np.maximum(vkm_a[fixed], 1e-9),
        prior_alpha=pr[:, 0], prior_beta=pr[:, 1],
    ).as_dict()  # fmt: skip
    null_zones = [zone_of_hotspot(k) for k, h in enumerate(hs) if h.fixed_at_s is None]
    rtm = [int(z) for z in rk_b.zone if hotspot_of(int(z)) < 0][:5]
    null_trials = [study(z) for z in dict.fromkeys(null_zones + rtm)]
    return {
        "seed": seed,
        "counts": {f"{k[0]}:{k[1]}" if isinstance(k, tuple) else k: v for k, v in counts.items()},
        "n_truth_events": int(len(E["type"])),
        "n_impacts": int(len(imp.get("t_s", []))),
        "precision_at_10": precision,
        "recall": recall,
        "precision_at_10_no_suppression": precision0,
        "recall_no_suppression": recall0,
        "busiest_arterials_in_top10": busy_in_top,
        "top10": [(str(rk.zone_id[k]), int(rk.n_events[k]), float(round(rk.eb_rate_per_vkm[k], 3)), hit[k]) for k in range(len(top))],
        "power_trial": power_trial,
        "null_trials": null_trials,
        "n_passes": int(len(ps)),
        "fp_examples": fp_examples[:20],
    }


def f1(c: Counter, t: str) -> tuple[float, float, float]:
    tp, fp, fn = c[f"{t}:tp"], c[f"{t}:fp"], c[f"{t}:fn"]
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103, 104])
    ap.add_argument("--vehicles", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--full-vertical", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=args.workers) as ex:
        res = list(ex.map(run_seed, args.seeds, [args.vehicles] * len(args.seeds), [args.full_vertical] * len(args.seeds)))
    c: Counter = Counter()
    for r in res:
        c.update(r["counts"])
    by_type = {t: dict(zip(("precision", "recall", "f1"), (round(x, 4) for x in f1(c, t)))) for t in EVENT_TYPES}
    for t in EVENT_TYPES:
        by_type[t].update(tp=c[f"{t}:tp"], fp=c[f"{t}:fp"], fn=c[f"{t}:fn"], ignored=c[f"{t}:ignored"])
    for r in res:
        pt = r["power_trial"]
        print(
            f"seed {r['seed']}: passes {r['n_passes']}, P@10 {r['precision_at_10']:.2f}, recall {r['recall']:.2f}, "
            f"busy arterials in top 10: {r['busiest_arterials_in_top10']}; fixed junctions: before {pt['events_before']}, "
            f"after {pt['events_after']}, ratio {pt['rate_ratio']:.2f} [{pt['ratio_lo']:.2f}, {pt['ratio_hi']:.2f}], "
            f"p={pt['p_value']:.2g}; null claims {sum(n['changed'] for n in r['null_trials'])}/{len(r['null_trials'])}",
            file=sys.stderr,
        )
        print(f"  top10: {r['top10']}", file=sys.stderr)
        for x in r["fp_examples"]:
            print(f"  false event: {x}", file=sys.stderr)
    nulls = [n for r in res for n in r["null_trials"]]
    out = {
        "f1_min_by_type": round(min(v["f1"] for v in by_type.values()), 4),
        "f1_by_type": by_type,
        "impacts_counted_as_events": int(c["impact_counted"]),
        "n_impacts": int(sum(r["n_impacts"] for r in res)),
        "hotspot_precision_at_10": round(float(np.mean([r["precision_at_10"] for r in res])), 4),
        "hotspot_recall": round(float(np.mean([r["recall"] for r in res])), 4),
        "hotspot_precision_at_10_no_suppression": round(float(np.mean([r["precision_at_10_no_suppression"] for r in res])), 4),
        "hotspot_recall_no_suppression": round(float(np.mean([r["recall_no_suppression"] for r in res])), 4),
        "busiest_arterials_in_top10": int(sum(r["busiest_arterials_in_top10"] for r in res)),
        "before_after_power": round(float(np.mean([r["power_trial"]["changed"] and r["power_trial"]["direction"] == "decrease" for r in res])), 4),
        "before_after_false_positive_rate": round(float(np.mean([n["changed"] for n in nulls])), 4),
        "before_after_null_trials": len(nulls),
        "seeds": args.seeds,
        "vehicles_per_seed": args.vehicles,
        "full_vertical": args.full_vertical,
        "runtime_s": round(time.time() - t0, 1),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
