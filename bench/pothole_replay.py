"""Record what the pothole detector saw in a ``bench/accuracy_roughness.py --network`` run,
then replay the detector and/or stage 2 on it with other settings, in seconds.

Usage::

    # 1. one full run (the same figures as accuracy_roughness.py), recorded per seed
    python bench/pothole_replay.py record /tmp/rec --network --vehicles 60 --rates 100 --dev --seeds 1,3,4,5,6
    # 2. stage 2 only, on the recorded impacts and passes (about 1 s per seed)
    python bench/pothole_replay.py replay /tmp/rec --seeds 1,3,4,5,6 --stage2 dip_slowed_fraction=0
    # 3. the detector too (about 10 s per seed): module constants of agents.potholes, or
    #    keyword arguments of impact_features
    python bench/pothole_replay.py replay /tmp/rec --seeds 1 --detector PARTNER_K_SIGMA=3.0 --detector-kw k_sigma=3.5

What a recording holds (``DIR/seed{N}.pkl``, ~150 MB per seed of 60 vehicles): every
``agents.potholes.impact_features`` call of stage 1 (inputs, in order, per vehicle), the
placement of trip distance along the matched path (``VehicleState.recent_*``, per vehicle
and trip), the published passes and impacts, and the simulator's truth the bench scores
against. A replayed detector's impacts are placed with those tables and kept only if they
fall in a published pass of their vehicle and segment (the privacy trim), as stage 1 does;
replaying the recorded detector gives its impacts exactly (development seeds 1, 3-6; with
``speed_dip`` and ``rise_mps2`` added since: the same impacts, plus their dips and rises, so
``--redetect`` is needed for the dip and rise rules to act on an older recording). Stage
2 runs through ``pipeline.offline.confirm_potholes`` (incremental, as the stream delivers)
and is scored by the bench's own ``_evaluate_network_potholes``.
"""

from __future__ import annotations

import argparse
import bisect
import pickle
import sys
import time
from collections import defaultdict
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import accuracy_roughness as bench  # noqa: E402

import agents.passes as passes_mod  # noqa: E402
import agents.potholes as potholes  # noqa: E402
import pipeline.offline as offline  # noqa: E402
import pipeline.stage1 as stage1  # noqa: E402
from pipeline.stage2 import Stage2Params, impact_record  # noqa: E402
from schemas.records import PassImpact  # noqa: E402


# ------------------------------------------------------------------------------ record
def record(out: Path, bench_args: list[str]) -> int:
    """Run the bench with hooks that keep, per seed, what stage 1 and 2 saw."""
    out.mkdir(parents=True, exist_ok=True)
    rec: dict = {}
    cur = {"veh": None}

    def reset() -> None:
        rec.clear()
        rec.update(calls=[], maps={}, passes=None, impacts=None, truth=None)

    reset()
    process_frame, impact_features = stage1.process_frame, passes_mod.impact_features
    place_impacts, score_traces = passes_mod._place_impacts, offline.score_traces
    evaluate, run_network = bench._evaluate_network_potholes, bench.run_network

    def hook_process_frame(state, frame, net, *, vehicle, params=passes_mod.PassParams()):
        cur["veh"] = vehicle
        return process_frame(state, frame, net, vehicle=vehicle, params=params)

    def hook_impact_features(accel, speed, d, fs, *, t_s=None, zi=None, final=False, **kw):
        rec["calls"].append((cur["veh"], zi is None, np.array(accel, float), np.array(speed, float),
                             np.array(d, float), fs, np.array(t_s, float), final))  # fmt: skip
        return impact_features(accel, speed, d, fs, t_s=t_s, zi=zi, final=final, **kw)

    def hook_place_impacts(st, net):
        m = rec["maps"].setdefault((cur["veh"], float(st.trip_start_t_s)), [np.zeros(0), np.zeros(0, int), np.zeros(0)])
        if st.recent_d.size:
            new = st.recent_d > (m[0][-1] if m[0].size else -np.inf)
            m[0] = np.concatenate([m[0], st.recent_d[new]])
            m[1] = np.concatenate([m[1], np.asarray(st.recent_seg)[new]])
            m[2] = np.concatenate([m[2], np.asarray(st.recent_off)[new]])
        return place_impacts(st, net)

    def hook_score_traces(*a, **k):
        run = score_traces(*a, **k)
        rec["passes"], rec["impacts"] = run.passes, run.impacts
        return run

    def hook_evaluate(f, alerts, n_passes, min_passes, iso_class, net, truth_passes=None, **kw):
        rec["truth"] = dict(f=f, n_passes=dict(n_passes), min_passes=min_passes, iso_class=np.asarray(iso_class),
                            truth_passes=truth_passes)  # fmt: skip
        return evaluate(f, alerts, n_passes, min_passes, iso_class, net, truth_passes=truth_passes, **kw)

    def hook_run_network(seed, *a, **k):
        reset()
        res = run_network(seed, *a, **k)
        with open(out / f"seed{seed}.pkl", "wb") as fh:
            pickle.dump(dict(rec), fh, protocol=5)
        reset()
        return res

    stage1.process_frame = hook_process_frame
    passes_mod.impact_features = hook_impact_features
    passes_mod._place_impacts = hook_place_impacts
    offline.score_traces = hook_score_traces
    bench._evaluate_network_potholes = hook_evaluate
    bench.run_network = hook_run_network
    return bench.main(bench_args)


# ------------------------------------------------------------------------------ replay
_NET = None


def _net():
    global _NET
    if _NET is None:
        from roadnet import load_network

        _NET = load_network()
    return _NET


def detect(rec: dict, **kw) -> list:
    """The streaming detector re-run on a recording, placed and trimmed as stage 1 does."""
    zi: dict = {}
    found = []
    for veh, new, a, v, d, fs, t, final in rec["calls"]:
        if new:
            zi[veh] = None
        imps, zi[veh] = potholes.impact_features(a, v, d, fs, t_s=t, zi=zi[veh], final=final, **kw)
        found.extend((veh, i) for i in imps)
    trips = defaultdict(list)
    for (veh, t0), m in rec["maps"].items():
        if m[0].size:
            trips[veh].append((t0, m))
    for v in trips.values():
        v.sort(key=lambda x: x[0])
    net = _net()
    published = defaultdict(list)
    for p in rec["passes"]:
        published[(p.vehicle, p.segment_id)].append((p.entry_time.timestamp(), p.exit_time.timestamp()))
    out = []
    for veh, imp in found:
        tl = trips.get(veh, [])
        k = bisect.bisect_right([x[0] for x in tl], imp.t_s) - 1
        if k < 0:
            continue
        md, ms, mo = tl[k][1]
        if imp.offset_m < md[0]:
            continue  # in a stretch that could not be placed
        i = int(np.searchsorted(md, imp.offset_m, side="right") - 1)
        seg = int(ms[i])
        off = min(float(mo[i]) + (imp.offset_m - float(md[i])), float(net.length_m[seg]))
        sid = str(net.segment_id[seg])
        b = passes_mod.BLOCK_S
        if any(e - b <= imp.t_s <= x + b for e, x in published.get((veh, sid), ())):
            out.append(impact_record(replace(imp, offset_m=off), vehicle=veh, segment_id=sid))
    return out


def _current(impacts: list) -> list:
    """Recorded impacts as records of the current schema (a recording made before a field was
    added, e.g. ``speed_dip`` or ``rise_mps2``, unpickles without it: the field's default)."""
    return [PassImpact(**vars(p)) for p in impacts]


def score(rec: dict, impacts: list, params: Stage2Params, coverage: bool) -> dict:
    alerts = offline.confirm_potholes(impacts, _net(), rec["passes"] if coverage else (), params=params)
    tr = rec["truth"]
    return bench._evaluate_network_potholes(tr["f"], alerts, tr["n_passes"], tr["min_passes"], tr["iso_class"],
                                            _net(), truth_passes=tr["truth_passes"])  # fmt: skip


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def _pairs(items: list[str]) -> dict:
    return {k: _value(v) for k, v in (s.split("=", 1) for s in items)}


def replay(args: argparse.Namespace) -> int:
    consts, kw, s2 = _pairs(args.detector), _pairs(args.detector_kw), _pairs(args.stage2)
    known = {f.name for f in fields(Stage2Params)}
    if set(s2) - known:
        raise SystemExit(f"unknown Stage2Params fields: {sorted(set(s2) - known)}")
    for k, v in consts.items():
        if not hasattr(potholes, k):
            raise SystemExit(f"agents.potholes has no {k}")
        setattr(potholes, k, v)
    params = replace(Stage2Params(), **s2)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.time()
        with open(Path(args.dir) / f"seed{seed}.pkl", "rb") as fh:
            rec = pickle.load(fh)
        impacts = detect(rec, **kw) if (consts or kw or args.redetect) else _current(rec["impacts"])
        ph = score(rec, impacts, params, args.coverage)
        rows.append(ph)
        print(f"seed {seed}: impacts {len(impacts)} (recorded {len(rec['impacts'])}), alerts {ph['n_confirmed']}, "
              f"precision {ph['precision']:.3f}, recall {ph['recall']:.3f} (D-E {ph['recall_on_de_roads']:.3f}), "
              f"bumps/rails confirmed {ph['false_potholes_at_bumps']} ({time.time() - t0:.0f} s)", flush=True)  # fmt: skip
    n_conf = sum(p["n_confirmed"] for p in rows)
    n_true = sum(p["n_true"] for p in rows)
    tp = sum(round(p["precision"] * p["n_confirmed"]) for p in rows if p["n_confirmed"])
    hit = sum(round(p["recall"] * p["n_true"]) for p in rows)
    print(f"pooled: precision {tp / max(n_conf, 1):.3f} ({tp} of {n_conf} alerts), recall {hit / max(n_true, 1):.3f} "
          f"({hit} of {n_true}), bumps/rails confirmed {sum(p['false_potholes_at_bumps'] for p in rows)}")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["record"] and len(argv) >= 2:
        return record(Path(argv[1]), argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("record", help="record DIR [accuracy_roughness.py arguments]")
    r = sub.add_parser("replay", help="replay a recording")
    r.add_argument("dir")
    r.add_argument("--seeds", required=True)
    r.add_argument("--detector", nargs="*", default=[], metavar="CONST=VALUE", help="agents.potholes constants")
    r.add_argument("--detector-kw", nargs="*", default=[], metavar="ARG=VALUE", help="impact_features arguments")
    r.add_argument("--redetect", action="store_true", help="re-run the detector even with no change")
    r.add_argument("--stage2", nargs="*", default=[], metavar="FIELD=VALUE", help="Stage2Params fields")
    r.add_argument("--coverage", action="store_true", help="stage 2 also gets the passes (hit rate)")
    return replay(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
