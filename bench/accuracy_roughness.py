"""Accuracy of road roughness (IRI) and pothole detection against the simulator's truth.

A fleet of quarter-car vehicles (:mod:`simulator.quarter_car`) drives synthetic straight
segments (lengths drawn from the real SQY network, >= 100 m) whose true profiles come from
:mod:`simulator.profiles`; the truth IRI is the ASTM E1926 IRI of the pavement profile.
The estimators (:mod:`agents.roughness`, :mod:`agents.potholes`) see only the IMU's
vertical acceleration, the speed and the offsets along the segment.

Hold-out by default: seed 2024 and the families ``sports`` and ``minibus`` (never used
while developing, which used ``--dev``: seed 1, families small_car/suv/van).

Usage::

    python bench/accuracy_roughness.py            # hold-out, 100 Hz and 10 Hz
    python bench/accuracy_roughness.py --dev      # development scenario (tuning)
    python bench/accuracy_roughness.py --network --vehicles 150 --rates 100,10
                                                  # real SQY network, full stream code
    python bench/accuracy_roughness.py --network --through-kafka --vehicles 60 --rates 100 --seeds 2065,2066
                                                  # the same through Kafka, a worker, the database

``--network``: :func:`simulator.simulate_fleet` drives a fleet of hold-out vehicles
(``sports``, ``minibus``; ``--dev``: the training families, seed 1) on the real network;
the traces are written and scored by :func:`pipeline.offline.score_traces` (decode,
pseudonymise, map matching, placement, passes, privacy trim: the worker's code), then the
fleet calibration (``agents.scores.calibrate``, what ``roadsense calibrate`` runs on the
database) anchored on ``N_REF`` reference segments (a profilometer survey: the most driven
streets >= 100 m, picked from the simulator's trips and excluded from the figures). The
headline figures are the pipeline's own calibrated segment scores (``run.scores``) of
segments with >= 5 passes against the true ASTM IRI; the same passes without the survey
(median gain 1) and uncalibrated are reported beside them. Potholes: the
streaming detector :func:`agents.potholes.impact_features` runs on every chunk the
processor places (``agents.passes``); impacts of published passes only go to stage 2
(:func:`pipeline.stage2.handle_records`, with the published passes as coverage for the hit
rate), which confirms across vehicles (``run.alerts``).
The JSON line then has ``mode``, ``seeds``, ``fs`` and the pooled figures, among them the
pothole recall per ISO class of the hole's road (``pothole_recall_by_class``, with
``n_true_potholes_by_class``): holes on class D-E roads do not stand out of their road, and a
seed's recall follows how many it has. How well the alerts' confidence states their chance of
being a real hole: ``pothole_confidence_brier`` and ``pothole_confidence_ece`` (calibration
error over ``CONFIDENCE_BINS``), with a reliability table per seed.

``--network --through-kafka`` (the local stack, started if not up): per seed, the same fleet
and references, the trace file replayed into fresh topics, one worker process (stage 1 and
2) into a fresh database until it has consumed every frame and every impact
(:func:`pipeline.streamrun.streamed`), then ``roadsense calibrate``'s job on the database;
the figures of what the maintenance team reads there (``segment_scores``, ``road_alerts``)
beside the offline scorer's on the same file (same pseudonym key, 2 s frames), with the
differences: passes (row for row), alerts (by id), every headline figure. Only the highest
frame rate of ``--rates`` is run. The JSON line has ``mode: through-kafka``, the database's
figures, the offline ones prefixed ``offline_``, the database's recall per ISO class and
both runs' pass and alert counts, and the database alerts' confidence figures.

Ends with one JSON line: spearman, median_rel_error, level_accuracy, pothole_precision,
pothole_recall, pothole_location_error_m_p90, false_potholes_at_bumps, and the 10 Hz
figures with their mean confidence.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.potholes import cluster_impacts, confirm, detect_impacts  # noqa: E402
from agents.roughness import (  # noqa: E402
    IRI_LEVEL_THRESHOLDS_M_PER_KM,
    estimate_iri,
    fleet_calibrate,
    iri_level,
    segment_scores,
)
from simulator.profiles import (  # noqa: E402
    ISO_CLASSES,
    ISO_GD0_M3,
    SegmentTruth,
    draw_features,
    segment_rng,
    segment_truth,
)
from simulator.quarter_car import (  # noqa: E402
    HOLDOUT_FAMILIES,
    TRAIN_FAMILIES,
    VehicleModel,
    draw_vehicle,
    drive,
)

#: Road classes of an urban network: mostly A-C, a few very rough D and rare E segments.
CLASS_PROBS = {"A": 0.30, "B": 0.34, "C": 0.22, "D": 0.10, "E": 0.04}
POTHOLES_PER_KM = {"A": 0.0, "B": 2.0, "C": 6.0, "D": 10.0, "E": 15.0}
SPEED_LIMITS_KMH = np.array([30, 50, 50, 50, 70, 90, 110])
MATCH_M = 10.0
#: A pothole "stands out of its road" when its effective depth is >= this many times the
#: road's own unevenness around it (:func:`simulator.profiles.pothole_contrast`). Reported
#: apart, not a filter: recall counts every hole. 10 splits the seeds looked at (2065/66)
#: into 0.93 above and 0.44 below; the figure says why a hole is missed, nothing more.
CLEAR_CONTRAST = 10.0


def segment_lengths(n: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths of real SQY segments (>= 100 m, capped at 800 m); lognormal fallback."""
    try:
        from roadnet import load_network

        net = load_network()
        pool = np.asarray(net.length_m, float)
        pool = pool[pool >= 100.0]
        if pool.size:
            return np.minimum(rng.choice(pool, n), 800.0)
    except Exception:  # noqa: BLE001 - the bench must run without the network data
        pass
    return np.clip(rng.lognormal(np.log(220), 0.5, n), 100, 800)


@dataclass
class Scenario:
    truths: list[SegmentTruth]
    limits_kmh: np.ndarray
    fleet: list[VehicleModel]


def make_scenario(seed: int, n_segments: int, families: tuple[str, ...], n_vehicles: int) -> Scenario:
    rng = np.random.default_rng(seed)
    lengths = segment_lengths(n_segments, rng)
    classes = rng.choice(list(CLASS_PROBS), n_segments, p=list(CLASS_PROBS.values()))
    truths = []
    for i in range(n_segments):
        c = classes[i]
        gd0 = ISO_GD0_M3[c] * np.exp(rng.uniform(np.log(0.5), np.log(2.0)))  # within class
        frng = segment_rng(seed, f"bench{i}", 7)
        feats = draw_features(
            lengths[i],
            frng,
            pothole_rate_per_km=POTHOLES_PER_KM[c],
            n_speed_bumps=int(frng.random() < 0.25),
            n_rail_crossings=int(frng.random() < 0.08),
        )
        truths.append(segment_truth(f"bench{i}", lengths[i], gd0, seed=seed, features=feats))
    limits = rng.choice(SPEED_LIMITS_KMH, n_segments).astype(float)
    fleet = [draw_vehicle(families[k % len(families)], rng) for k in range(n_vehicles)]
    return Scenario(truths, limits, fleet)


def speed_law(truth: SegmentTruth, limit_kmh: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Speed vs distance for one pass: cruise near the limit, slow for bumps and rails."""
    x = np.arange(-60.0, truth.length_m + 15.0, 1.0)
    cruise = float(np.clip(limit_kmh * rng.uniform(0.75, 1.05), 20.0, 110.0))
    wob = np.interp(x, np.linspace(x[0], x[-1], 8), 1 + 0.04 * rng.standard_normal(8))
    v = cruise * wob / 3.6
    for f in truth.features:
        if f.kind in ("speed_bump", "speed_cushion"):
            target = rng.uniform(15.0, 30.0) / 3.6
        elif f.kind == "rail_crossing":
            target = cruise * rng.uniform(0.55, 0.85) / 3.6
        else:
            continue
        d = np.abs(x - f.position_m)
        # braking at 2 m/s^2 before, re-accelerating at 1.5 m/s^2 after: v^2 = vt^2 + 2 a d
        acc = np.where(x < f.position_m, 2.0, 1.5)
        v = np.minimum(v, np.sqrt(target**2 + 2 * acc * np.maximum(d - 2.0, 0.0)))
    return x, np.clip(v * 3.6, 12.0, 115.0)


def run(scn: Scenario, fs: float, passes: int, seed: int, n_ref: int) -> dict:
    rng = np.random.default_rng(seed + int(fs))
    est, conf, seg_ids, veh_ids = [], [], [], []
    impacts, imp_seg, imp_veh = [], [], []
    for s, truth in enumerate(scn.truths):
        vehicles = rng.choice(len(scn.fleet), size=passes, replace=len(scn.fleet) < passes)
        for vi in vehicles:
            veh = scn.fleet[vi]
            xs, vs = speed_law(truth, scn.limits_kmh[s], rng)
            _, pos, sp, acc = drive(veh, truth.x_m, truth.z_m, xs, vs, fs, rng)
            m = (pos >= 0) & (pos <= truth.length_m)
            e, c = estimate_iri(acc[m], sp[m], fs)
            est.append(e)
            conf.append(c)
            seg_ids.append(truth.segment)
            veh_ids.append(f"v{vi}")
            for imp in detect_impacts(acc[m], sp[m], fs, pos[m]):
                impacts.append(imp)
                imp_seg.append(truth.segment)
                imp_veh.append(f"v{vi}")
    est_a, conf_a = np.array(est), np.array(conf)
    true_iri = {t.segment: t.iri_m_per_km for t in scn.truths}
    # reference segments: a few streets with a profilometer IRI (the absolute anchor)
    ref_ids = [t.segment for t in scn.truths[:n_ref]]
    reference = {k: true_iri[k] for k in ref_ids} if n_ref else None
    gains = fleet_calibrate(est_a, veh_ids, seg_ids, reference_iri=reference)
    out = {"gains": gains}
    for label, g in (("calibrated", gains), ("prior", None)):
        scores = segment_scores(est_a, seg_ids, veh_ids, gains=g, confidence=conf_a)
        out[label] = evaluate_roughness(scn, scores, exclude=set(ref_ids))
    out["mean_pass_confidence"] = float(np.nanmean(conf_a))
    clusters = cluster_impacts(impacts, imp_seg, imp_veh)
    found = confirm(clusters, fs_hz=fs)
    out["potholes"] = evaluate_potholes(scn, found)
    return out


def evaluate_roughness(scn: Scenario, scores: dict, exclude: set) -> dict:
    rows = []
    for t in scn.truths:
        sc = scores.get(t.segment)
        if sc is None or sc.n_passes < 5 or t.segment in exclude:
            continue
        rows.append((t.iso_class, t.iri_m_per_km, sc.iri_m_per_km, sc.ci_low_m_per_km, sc.ci_high_m_per_km, sc.confidence))
    cls = np.array([r[0] for r in rows])
    tru = np.array([r[1] for r in rows])
    est = np.array([r[2] for r in rows])
    lo = np.array([r[3] for r in rows])
    hi = np.array([r[4] for r in rows])
    rel = np.abs(est - tru) / tru
    per_class = {}
    for c in ISO_CLASSES:
        m = cls == c
        if m.any():
            per_class[c] = {
                "n": int(m.sum()),
                "true_median": float(np.median(tru[m])),
                "est_median": float(np.median(est[m])),
                "median_rel_error": float(np.median(rel[m])),
                "bias": float(np.median((est[m] - tru[m]) / tru[m])),
            }
    return {
        "n_segments": int(len(rows)),
        "spearman": float(stats.spearmanr(tru, est).statistic),
        "median_rel_error": float(np.median(rel)),
        "p90_rel_error": float(np.percentile(rel, 90)),
        "median_bias": float(np.median((est - tru) / tru)),
        "level_accuracy": float(np.mean(iri_level(tru) == iri_level(est))),
        "interval_coverage": float(np.mean((lo <= tru) & (tru <= hi))),
        "mean_confidence": float(np.mean([r[5] for r in rows])),
        "per_class": per_class,
    }


def evaluate_potholes(scn: Scenario, found: list) -> dict:
    by_seg = {t.segment: t for t in scn.truths}
    true_ph = {t.segment: [f.position_m for f in t.features if f.kind == "pothole"] for t in scn.truths}
    designed = {t.segment: [f.position_m for f in t.features if f.kind != "pothole"] for t in scn.truths}
    confirmed = [f for f in found if f.kind == "pothole"]
    matched_true: set[tuple[str, int]] = set()
    errors, tp, at_bumps = [], 0, 0
    for f in sorted(confirmed, key=lambda f: -f.confidence):
        cand = [(abs(p - f.position_m), k) for k, p in enumerate(true_ph[f.segment_id]) if (f.segment_id, k) not in matched_true]
        cand = [c for c in cand if c[0] <= MATCH_M]
        if cand:
            d, k = min(cand)
            matched_true.add((f.segment_id, k))
            errors.append(d)
            tp += 1
        elif any(abs(p - f.position_m) <= MATCH_M for p in designed[f.segment_id]):
            at_bumps += 1
    n_true = sum(len(v) for v in true_ph.values())
    # recall restricted to potholes a tyre can feel (effective depth >= 2 cm after bridging)
    feel = []
    for s, t in by_seg.items():
        for k, f in enumerate([f for f in t.features if f.kind == "pothole"]):
            eff = min(-f.height_m, f.length_m**2 / (8 * 0.33))
            feel.append(((s, k) in matched_true, eff >= 0.02, t.iso_class in "ABC"))
    feel_a = np.array(feel, dtype=bool).reshape(-1, 3)
    n_designed = sum(len(v) for v in designed.values())
    bumps_confirmed = sum(1 for f in found if f.kind == "bump")
    return {
        "n_true": n_true,
        "n_confirmed": len(confirmed),
        "precision": tp / len(confirmed) if confirmed else float("nan"),
        "recall": tp / n_true if n_true else float("nan"),
        "recall_felt": float(feel_a[feel_a[:, 1], 0].mean()) if feel_a[:, 1].any() else float("nan"),
        "recall_on_abc_roads": float(feel_a[feel_a[:, 2], 0].mean()) if feel_a[:, 2].any() else float("nan"),
        "recall_on_de_roads": float(feel_a[~feel_a[:, 2], 0].mean()) if (~feel_a[:, 2]).any() else float("nan"),
        "location_error_m_p90": float(np.percentile(errors, 90)) if errors else float("nan"),
        "false_potholes_at_bumps": at_bumps,
        "n_designed_features": n_designed,
        "bumps_reported": bumps_confirmed,
    }


def print_report(label: str, res: dict) -> None:
    cal, pri, ph = res["calibrated"], res["prior"], res["potholes"]
    print(f"\n== {label}: {cal['n_segments']} segments with >= 5 passes (reference segments excluded)")
    print(f"{'class':>5} {'n':>4} {'true IRI':>9} {'est IRI':>8} {'med rel err':>11} {'bias':>7}")
    for c, r in cal["per_class"].items():
        print(f"{c:>5} {r['n']:>4} {r['true_median']:>9.2f} {r['est_median']:>8.2f} {r['median_rel_error']:>11.1%} {r['bias']:>+7.1%}")
    for name, r in (("fleet-calibrated", cal), ("physics prior only", pri)):
        print(
            f"{name:>19}: spearman {r['spearman']:.3f}  median rel err {r['median_rel_error']:.1%}  "
            f"p90 {r['p90_rel_error']:.1%}  bias {r['median_bias']:+.1%}  level acc {r['level_accuracy']:.1%}  "
            f"interval coverage {r['interval_coverage']:.0%}  confidence {r['mean_confidence']:.2f}"
        )
    print(
        f"potholes: true {ph['n_true']}, confirmed {ph['n_confirmed']}, precision {ph['precision']:.3f}, "
        f"recall {ph['recall']:.3f} (felt >= 2 cm: {ph['recall_felt']:.3f}; on A-C roads "
        f"{ph['recall_on_abc_roads']:.3f}, on D-E roads {ph['recall_on_de_roads']:.3f}), loc err p90 "
        f"{ph['location_error_m_p90']:.1f} m, false at bumps/rails {ph['false_potholes_at_bumps']} "
        f"of {ph['n_designed_features']} designed features ({ph['bumps_reported']} reported as bumps)"
    )


# ----------------------------------------------------------------------------------------
# --network: a fleet on the real SQY network, through the exact stream code
# ----------------------------------------------------------------------------------------
#: pseudonym key of both paths (offline scorer and the worker of --through-kafka)
KEY = "bench-accuracy-roughness-key-0123456789"
FRAME_S = 2.0  #: seconds of samples per frame, both paths (the offline scorer's default)


@dataclass
class NetworkFleet:
    """A simulated fleet on the real network, its truth and the reference survey (``refs``:
    segment id -> true IRI, m/km)."""

    net: object
    fleet: object
    refs: dict
    sim_s: float

    @property
    def truth(self):
        return self.fleet.truth

    def true_iri(self, i: int) -> float:
        x = float(self.truth.iri_m_per_km[i])
        return x if np.isfinite(x) else float(self.truth.surface.truth(i).iri_m_per_km)


def simulate_network(seed: int, n_vehicles: int, fs: float, families: tuple[str, ...],
                     trip_km: tuple[float, float]) -> NetworkFleet:  # fmt: skip
    from collections import defaultdict

    from roadnet import load_network
    from simulator import simulate_fleet

    net = load_network()
    t0 = time.time()
    fleet = simulate_fleet(net, n_vehicles=n_vehicles, seed=seed, fs_hz=fs, vehicle_families=families, trip_km=trip_km)
    sim = NetworkFleet(net, fleet, {}, time.time() - t0)
    # the maintenance team's profilometer survey: N_REF streets >= REF_MIN_M long, the most
    # driven ones (chosen from the simulator's own trips, not from the estimates); they
    # anchor the pipeline's calibration and are left out of the figures
    drove = defaultdict(int)
    for s in np.asarray(sim.truth.passes["segment_id"]).astype(str):
        drove[s] += 1
    long_enough = [s for s in sorted(drove, key=lambda s: (-drove[s], s)) if net.length_m[net.index_of(s)] >= REF_MIN_M]
    sim.refs = {s: sim.true_iri(net.index_of(s)) for s in long_enough[:N_REF]}
    return sim


def run_network(seed: int, n_vehicles: int, fs: float, families: tuple[str, ...], trip_km: tuple[float, float],
                min_passes: int = 5, rows_out: str | None = None) -> dict:  # fmt: skip
    import tempfile

    from simulator import write_fleet

    sim = simulate_network(seed, n_vehicles, fs, families, trip_km)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_fleet(sim.fleet, tmp, format="parquet")
        res = score_offline(sim, path, min_passes)
    if rows_out:
        _write_rows(rows_out, seed, fs, res["run"], sim.truth, sim.net, sim.refs, sim.true_iri, min_passes)
    del res["run"]  # every pass and impact: not kept across seeds
    return res


def score_offline(sim: NetworkFleet, path, min_passes: int = 5) -> dict:
    """The worker's code in-process (:func:`pipeline.offline.score_traces`) on the trace
    file ``path``: figures of its calibrated scores and alerts, with ``run`` (the ScoreRun)."""
    from agents.scores import calibrate, vehicle_segment_means
    from agents.scores import segment_scores as pipeline_segment_scores
    from pipeline.offline import score_traces
    from pipeline.pseudonym import Pseudonymiser

    t1 = time.time()
    run = score_traces([path], sim.net, pseudonymise=Pseudonymiser(KEY), frame_s=FRAME_S, reference_iri=sim.refs)
    t_score = time.time() - t1

    # headline: the pipeline's own calibrated scores (roadsense score == stream + job)
    rough = network_figures(sim, run.scores, min_passes)
    rough["anchor"] = run.calibration.anchor
    rough["default_gain"] = run.calibration.default_gain
    # the same pipeline functions without the survey (median gain 1) and without calibration
    cal0 = calibrate(*vehicle_segment_means(run.passes))
    rough["no_reference"] = network_figures(sim, pipeline_segment_scores(run.passes, run.events, cal0), min_passes)
    rough["uncalibrated"] = network_figures(sim, pipeline_segment_scores(run.passes, run.events), min_passes)
    conf = [p.confidence for p in run.passes if p.iri_m_per_km is not None]
    rough["mean_pass_confidence"] = float(np.mean(conf)) if conf else float("nan")
    # what the maintenance team reads with each score (sql/010): lower at 10 Hz
    seg_conf = [sc.confidence for sc in run.scores
                if sc.n_passes >= min_passes and sc.confidence is not None and sc.segment_id not in sim.refs]  # fmt: skip
    rough["mean_segment_confidence"] = float(np.mean(seg_conf)) if seg_conf else float("nan")

    # potholes: what the pipeline itself confirmed (impacts released with their passes,
    # stage 2 run offline one impact at a time, as the stream delivers them)
    ph = network_potholes(sim, [p.segment_id for p in run.passes], run.alerts, min_passes)
    return {"roughness": rough, "potholes": ph, "n_passes": len(run.passes), "n_impacts": len(run.impacts),
            "n_alerts": len(run.alerts), "sim_s": sim.sim_s, "score_s": t_score,
            "dead_letters": len(run.dead_letters), "run": run}  # fmt: skip


def network_figures(sim: NetworkFleet, scores, min_passes: int) -> dict:
    """Roughness figures of segment scores (anything with ``segment_id``, ``n_passes`` and
    ``iri_m_per_km``) against the truth: segments with >= ``min_passes`` passes, references
    excluded."""
    net, tr = sim.net, sim.truth
    rows = []
    for sc in scores:
        if sc.n_passes < min_passes or sc.iri_m_per_km is None or sc.segment_id in sim.refs:
            continue
        i = net.index_of(sc.segment_id)
        rows.append((str(tr.iso_class[i]), sim.true_iri(i), float(sc.iri_m_per_km), float(net.length_m[i])))
    return _roughness_figures(rows)


def network_potholes(sim: NetworkFleet, pass_segments, alerts: list, min_passes: int) -> dict:
    """Pothole figures of ``alerts``; ``pass_segments``: the segment id of every pass."""
    from collections import Counter

    tr = sim.truth
    n_passes = Counter(pass_segments)
    return _evaluate_network_potholes(tr.features, alerts, n_passes, min_passes, tr.iso_class, sim.net,
                                      truth_passes=tr.passes)  # fmt: skip


def _write_rows(path: str, seed: int, fs: float, run, tr, net, refs: dict, true_iri, min_passes: int) -> None:
    """Append one JSON line per scored segment (>= ``min_passes`` passes, references
    excluded): length, class, true IRI, the IRI of the same profile without its potholes,
    the pipeline's calibrated score and the segment's features (``--rows-out``)."""
    import pickle

    from agents.iri import iri
    from simulator.profiles import feature_profile

    f = tr.features
    fseg = np.asarray(f.get("segment_id", np.zeros(0)), dtype=object).astype(str)
    fkind = np.asarray(f.get("kind", np.zeros(0)), dtype=object).astype(str)

    with open(f"{path}.{seed}.{fs:g}.pkl", "wb") as pk:  # the passes and gains, for re-aggregation
        pickle.dump({"passes": [p.model_dump() for p in run.passes], "gains": run.calibration}, pk)
    with open(path, "a") as out:
        for sc in run.scores:
            if sc.n_passes < min_passes or sc.iri_m_per_km is None or sc.segment_id in refs:
                continue
            i = net.index_of(sc.segment_id)
            t = tr.surface.truth(i)
            holes = [x for x in t.features if x.kind == "pothole"]
            no_holes = float("nan")
            if holes:
                defects, _ = feature_profile(t.x_m, holes)
                inside = (t.x_m >= -1e-9) & (t.x_m <= t.length_m + 1e-9)
                no_holes = float(iri((t.z_pavement_m - defects)[inside], t.dx_m))
            m = fseg == str(sc.segment_id)
            row = {"seed": seed, "fs": fs, "segment_id": str(sc.segment_id), "length_m": float(net.length_m[i]),
                   "iso_class": str(tr.iso_class[i]), "true_iri": true_iri(i), "true_iri_no_potholes": no_holes,
                   "est_iri": float(sc.iri_m_per_km), "n_passes": int(sc.n_passes),
                   "n_vehicles": int(getattr(sc, "n_vehicles", 0) or 0), "n_potholes": int(np.sum(m & (fkind == "pothole"))),
                   "pothole_depths_m": [float(-x.height_m) for x in holes],
                   "pothole_lengths_m": [float(x.length_m) for x in holes],
                   "n_designed": int(np.sum(m & (fkind != "pothole"))), "n_stretches": len(tr.surface.stretches[i])}  # fmt: skip
            out.write(json.dumps(row) + "\n")


N_REF = 6  #: reference segments (known IRI) anchoring the fleet calibration in --network
REF_MIN_M = 100.0  #: a surveyed street is at least this long (short links read high: junctions)


def _roughness_figures(rows: list[tuple[str, float, float, float]]) -> dict:
    cls = np.array([r[0] for r in rows])
    tru = np.array([r[1] for r in rows])
    est = np.array([r[2] for r in rows])
    rel = np.abs(est - tru) / tru
    per_class = {c: {"n": int((cls == c).sum()), "true_median": float(np.median(tru[cls == c])),
                     "est_median": float(np.median(est[cls == c])),
                     "median_rel_error": float(np.median(rel[cls == c]))} for c in ISO_CLASSES if (cls == c).any()}  # fmt: skip
    return {
        "n_segments": len(rows),
        "spearman": float(stats.spearmanr(tru, est).statistic) if len(rows) > 2 else float("nan"),
        "median_rel_error": float(np.median(rel)) if len(rows) else float("nan"),
        "median_bias": float(np.median((est - tru) / tru)) if len(rows) else float("nan"),
        "level_accuracy": float(np.mean(iri_level(tru) == iri_level(est))) if len(rows) else float("nan"),
        # misclassified segments whose true IRI lies within 15 % of a level threshold
        # (2.5, 4.0 m/km): how many level errors are boundary cases
        "n_level_errors": int(np.sum(iri_level(tru) != iri_level(est))),
        "n_level_errors_near_threshold": int(np.sum((iri_level(tru) != iri_level(est)) & _near_threshold(tru))),
        "per_class": per_class,
    }


def _near_threshold(iri: np.ndarray, rel: float = 0.15) -> np.ndarray:
    t = np.asarray(IRI_LEVEL_THRESHOLDS_M_PER_KM, float)
    return np.any(np.abs(np.asarray(iri, float)[:, None] / t[None, :] - 1.0) <= rel, axis=1)


def _drivers_over(f: dict, truth_passes: dict | None) -> np.ndarray:
    """Distinct vehicles that, in the simulator's truth, drove over each feature's offset."""
    segs = np.asarray(f["segment_id"]).astype(str)
    off = np.asarray(f["offset_m"], float)
    out = np.zeros(segs.size, np.int64)
    if truth_passes is None or segs.size == 0:
        return out
    ps = np.asarray(truth_passes["segment_id"]).astype(str)
    pv = np.asarray(truth_passes["vehicle_id"]).astype(str)
    lo = np.minimum(np.asarray(truth_passes["entry_offset_m"], float), np.asarray(truth_passes["exit_offset_m"], float))
    hi = np.maximum(np.asarray(truth_passes["entry_offset_m"], float), np.asarray(truth_passes["exit_offset_m"], float))
    order = np.argsort(ps, kind="stable")
    ps, pv, lo, hi = ps[order], pv[order], lo[order], hi[order]
    for k in range(segs.size):
        a, b = np.searchsorted(ps, [segs[k], segs[k]], side="left")[0], np.searchsorted(ps, segs[k], side="right")
        over = (lo[a:b] <= off[k]) & (off[k] <= hi[a:b])
        out[k] = len(set(pv[a:b][over].tolist()))
    return out


def _evaluate_network_potholes(f: dict, alerts: list, n_passes: dict, min_passes: int, iso_class, net,
                               truth_passes: dict | None = None, min_vehicles: int = 3) -> dict:  # fmt: skip
    segs = np.asarray(f["segment_id"]).astype(str)
    kind = np.asarray(f["kind"]).astype(str)
    off = np.asarray(f["offset_m"], float)
    ok_seg = np.array([n_passes.get(s, 0) >= min_passes for s in segs], bool)
    true_idx = np.flatnonzero((kind == "pothole") & ok_seg)
    # potholes that fewer than `min_vehicles` distinct vehicles drove over cannot be
    # confirmed (stage 2's rule): counted in `recall` (the issue's definition: segments
    # with >= 5 passes), reported apart so that the cause of a miss is visible
    drivers = _drivers_over(f, truth_passes)
    matched: set[int] = set()
    errors, tp, at_bumps, bump_detail, conf_real = [], 0, 0, [], []
    for a in sorted(alerts, key=lambda a: -a.confidence):
        cand = [(abs(off[k] - a.position_m), k) for k in np.flatnonzero((segs == a.segment_id) & (kind == "pothole"))
                if k not in matched and abs(off[k] - a.position_m) <= MATCH_M]  # fmt: skip
        conf_real.append((float(a.confidence), bool(cand)))
        if cand:
            d, k = min(cand)
            matched.add(k)
            errors.append(d)
            tp += 1
        elif np.any(near := (segs == a.segment_id) & (kind != "pothole") & (np.abs(off - a.position_m) <= MATCH_M)):
            at_bumps += 1
            k = int(np.flatnonzero(near)[np.argmin(np.abs(off[near] - a.position_m))])
            bump_detail.append(f"{a.segment_id} alert at {a.position_m:.1f} m, {kind[k]} at {off[k]:.1f} m")
    cls = np.array([str(iso_class[net.index_of(s)]) for s in segs], dtype=object)
    de = np.isin(cls, ["D", "E"])
    hit = np.array([k in matched for k in range(len(segs))], bool)
    # recall follows the road: a hole in a rough road does not stand out of it
    true_cls, true_hit = cls[true_idx], hit[true_idx]
    by_class = {c: [int(true_hit[true_cls == c].sum()), int((true_cls == c).sum())] for c in np.unique(true_cls)}
    sel_de = true_idx[de[true_idx]]
    reach = true_idx[drivers[true_idx] >= min_vehicles] if truth_passes is not None else true_idx
    contrast = np.asarray(f.get("contrast", np.full(segs.size, np.nan)), float)
    clear = true_idx[contrast[true_idx] >= CLEAR_CONTRAST]
    return {
        "n_true_clear": int(clear.size),
        "recall_clear": float(hit[clear].mean()) if clear.size else float("nan"),
        "designed_detail": bump_detail,
        "n_true": int(true_idx.size),
        "n_true_reachable": int(reach.size),
        "recall_reachable": float(hit[reach].mean()) if reach.size else float("nan"),
        "n_confirmed": len(alerts),
        "precision": tp / len(alerts) if alerts else float("nan"),
        "recall": float(hit[true_idx].mean()) if true_idx.size else float("nan"),
        "recall_on_de_roads": float(hit[sel_de].mean()) if sel_de.size else float("nan"),
        "location_error_m_p90": float(np.percentile(errors, 90)) if errors else float("nan"),
        "false_potholes_at_bumps": at_bumps,
        "n_designed_features": int(((kind != "pothole") & ok_seg).sum()),
        "found_by_class": by_class,
        "confidence_real": conf_real,
    }


CONFIDENCE_BINS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0)  #: reliability table of the alerts' confidence


def _calibration(conf_real: list[tuple[float, bool]]) -> dict:
    """How well the alerts' confidence states the chance that an alert is a real hole: Brier
    score (mean squared difference, 0 best), expected calibration error over
    :data:`CONFIDENCE_BINS` (alert-weighted mean |mean confidence - share real|) and, per bin,
    ``[lo, hi, n, mean confidence, share real]``."""
    if not conf_real:
        return {"brier": float("nan"), "ece": float("nan"), "bins": []}
    p, y = (np.asarray(x, float) for x in zip(*conf_real))
    k = np.clip(np.searchsorted(CONFIDENCE_BINS, p, side="right") - 1, 0, len(CONFIDENCE_BINS) - 2)
    bins, ece = [], 0.0
    for b in np.unique(k):
        m = k == b
        bins.append([CONFIDENCE_BINS[b], CONFIDENCE_BINS[b + 1], int(m.sum()), float(p[m].mean()), float(y[m].mean())])
        ece += m.sum() * abs(p[m].mean() - y[m].mean())
    return {"brier": float(np.mean((p - y) ** 2)), "ece": float(ece / p.size), "bins": bins}


def _calibration_text(cal: dict) -> str:
    return (f"alert confidence: Brier {cal['brier']:.4f}, calibration error {cal['ece']:.3f}; by confidence "
            + ", ".join(f"[{lo:g}, {hi:g}) {n} alerts, mean {c:.2f}, real {r:.2f}" for lo, hi, n, c, r in cal["bins"]))


def _json_line(line: dict) -> str:
    """The closing JSON line; a figure with nothing to measure (NaN: precision with no alert
    at 10 Hz) is null, as JSON has no NaN."""
    return json.dumps({k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in line.items()})


def _by_class(found: list[dict]) -> dict:
    """Pothole recall per ISO class of the hole's segment, over seeds (``{class: [found, n]}``
    per seed)."""
    tot = {c: [sum(f.get(c, (0, 0))[0] for f in found), sum(f.get(c, (0, 0))[1] for f in found)] for c in ISO_CLASSES}
    return {"n_true_potholes_by_class": {c: n for c, (_, n) in tot.items() if n},
            "pothole_recall_by_class": {c: round(k / n, 4) for c, (k, n) in tot.items() if n}}  # fmt: skip


def _pool(rs: list[dict]) -> dict:
    """Headline figures over seeds: roughness figures averaged; pothole precision and recall
    over all alerts and true potholes of the seeds, the largest p90 location error (m)."""
    keys = ("spearman", "median_rel_error", "level_accuracy")
    r = {k: float(np.mean([x["roughness"][k] for x in rs])) for k in keys}
    tp = [x["potholes"] for x in rs]
    n_conf = sum(p["n_confirmed"] for p in tp)
    n_true = sum(p["n_true"] for p in tp)
    prec = sum(p["precision"] * p["n_confirmed"] for p in tp if p["n_confirmed"]) / n_conf if n_conf else float("nan")
    rec = sum(p["recall"] * p["n_true"] for p in tp if p["n_true"]) / n_true if n_true else float("nan")
    n_reach = sum(p["n_true_reachable"] for p in tp)
    rec_reach = (sum(p["recall_reachable"] * p["n_true_reachable"] for p in tp if p["n_true_reachable"]) / n_reach
                 if n_reach else float("nan"))  # fmt: skip
    n_clear = sum(p["n_true_clear"] for p in tp)
    rec_clear = (sum(p["recall_clear"] * p["n_true_clear"] for p in tp if p["n_true_clear"]) / n_clear
                 if n_clear else float("nan"))  # fmt: skip
    cal = _calibration([x for p in tp for x in p["confidence_real"]])
    return {**r, "pothole_precision": prec, "pothole_recall": rec,
            "pothole_confidence_brier": cal["brier"], "pothole_confidence_ece": cal["ece"],
            "pothole_location_error_m_p90": float(np.nanmax([p["location_error_m_p90"] for p in tp])),
            "false_potholes_at_bumps": sum(p["false_potholes_at_bumps"] for p in tp),
            "n_segments": sum(x["roughness"]["n_segments"] for x in rs), "n_true_potholes": n_true,
            "n_true_potholes_reachable": n_reach, "pothole_recall_reachable": rec_reach,
            "n_true_potholes_clear": n_clear, "pothole_recall_clear": rec_clear,
            **_by_class([p["found_by_class"] for p in tp]),
            "n_level_errors": sum(x["roughness"]["n_level_errors"] for x in rs),
            "n_level_errors_near_threshold": sum(x["roughness"]["n_level_errors_near_threshold"] for x in rs)}  # fmt: skip


def main_network(args: argparse.Namespace) -> int:
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([1] if args.dev else [2024, 2025])
    families = TRAIN_FAMILIES if args.dev else HOLDOUT_FAMILIES
    rates = [float(r) for r in args.rates.split(",")]
    t0 = time.time()
    results: dict[float, list[dict]] = {fs: [] for fs in rates}
    for fs in rates:
        for seed in seeds:
            res = run_network(seed, args.vehicles, fs, families, (args.trip_km_min, args.trip_km_max),
                              rows_out=args.rows_out)
            results[fs].append(res)
            r, ph = res["roughness"], res["potholes"]
            print(f"\n== network, seed {seed}, {fs:g} Hz, {args.vehicles} vehicles ({', '.join(families)}): "
                  f"{res['n_passes']} passes, {res['n_impacts']} impacts kept; simulate {res['sim_s']:.0f} s, "
                  f"score {res['score_s']:.0f} s, dead letters {res['dead_letters']}")  # fmt: skip
            print(f"{'class':>5} {'n':>4} {'true IRI':>9} {'est IRI':>8} {'med rel err':>11}")
            for c, pc in r["per_class"].items():
                print(f"{c:>5} {pc['n']:>4} {pc['true_median']:>9.2f} {pc['est_median']:>8.2f} {pc['median_rel_error']:>11.1%}")
            for label, x in ((f"pipeline, calibrated (anchor {r['anchor']}, {N_REF} refs)", r),
                             ("same, no reference (median gain 1)", r["no_reference"]),
                             ("uncalibrated (gain 1)", r["uncalibrated"])):
                print(f"roughness, {label} ({x['n_segments']} segments with >= 5 passes): spearman {x['spearman']:.3f}  "
                      f"median rel err {x['median_rel_error']:.1%}  bias {x['median_bias']:+.1%}  "
                      f"level acc {x['level_accuracy']:.1%} ({x['n_level_errors_near_threshold']} of "
                      f"{x['n_level_errors']} errors within 15 % of a threshold)")
            print(f"confidence (0..1): passes {r['mean_pass_confidence']:.2f}, segment scores {r['mean_segment_confidence']:.2f}")
            print(f"potholes: true {ph['n_true']} (on segments with >= 5 passes; {ph['n_true_reachable']} "
                  f"driven over by >= 3 vehicles, recall on those {ph['recall_reachable']:.3f}), "
                  f"alerts {ph['n_confirmed']}, "
                  f"precision {ph['precision']:.3f}, recall {ph['recall']:.3f} (D-E roads {ph['recall_on_de_roads']:.3f}), "
                  f"loc err p90 {ph['location_error_m_p90']:.1f} m, false at bumps/rails {ph['false_potholes_at_bumps']} "
                  f"of {ph['n_designed_features']}; holes standing out of their road (contrast >= {CLEAR_CONTRAST:g}) "
                  f"{ph['n_true_clear']}, recall on those {ph['recall_clear']:.3f}; found by ISO class of the road "
                  + ", ".join(f"{c} {k}/{n}" for c, (k, n) in ph["found_by_class"].items()))  # fmt: skip
            print(_calibration_text(_calibration(ph["confidence_real"])))
            for d in ph["designed_detail"]:
                print(f"  alert within {MATCH_M:g} m of a designed feature, no hole: {d}")
    print(f"\n({time.time() - t0:.0f} s)")

    def pooled(fs: float) -> dict:
        rs = results[fs]
        keys = ("spearman", "median_rel_error", "level_accuracy")
        r = {f"no_reference_{k}": float(np.mean([x["roughness"]["no_reference"][k] for x in rs])) for k in keys}
        r.update({f"uncalibrated_{k}": float(np.mean([x["roughness"]["uncalibrated"][k] for x in rs])) for k in keys})
        r["mean_pass_confidence"] = float(np.mean([x["roughness"]["mean_pass_confidence"] for x in rs]))
        r["mean_segment_confidence"] = float(np.mean([x["roughness"]["mean_segment_confidence"] for x in rs]))
        return {**_pool(rs), **r}

    main_fs = max(rates)
    line = {"mode": "network", "seeds": seeds, "fs": main_fs, "families": list(families), "vehicles": args.vehicles}
    line.update({k: round(v, 4) if isinstance(v, float) else v for k, v in pooled(main_fs).items()})
    for fs in rates:
        if fs != main_fs:
            line.update({f"{fs:g}hz_{k}": round(v, 4) if isinstance(v, float) else v for k, v in pooled(fs).items()})
    print(_json_line(line))
    return 0


# ----------------------------------------------------------------------------------------
# --network --through-kafka: the same fleet through Kafka, one worker and the database
# ----------------------------------------------------------------------------------------
def run_network_through_kafka(seed: int, n_vehicles: int, fs: float, families: tuple[str, ...],
                              trip_km: tuple[float, float], min_passes: int = 5, info=None,
                              timeout_s: float = 1800.0) -> dict:  # fmt: skip
    """:func:`run_network`'s fleet replayed into fresh Kafka topics, one worker (stage 1
    and 2) into a fresh database, then the calibration job on the database with the same
    references; the figures of what the database holds, and the offline scorer's on the
    same trace file (``offline``). ``info``: the stack's connection info (default: start
    it); ``timeout_s``: for each wait on the worker, s."""
    import tempfile

    from pipeline import db, queries, stack
    from pipeline.calibration import run_calibration, write_references
    from pipeline.streamrun import pass_rows, read_alerts, record_rows, streamed
    from simulator import write_fleet

    info = info or stack.up()
    sim = simulate_network(seed, n_vehicles, fs, families, trip_km)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_fleet(sim.fleet, Path(tmp) / "fleet", format="parquet")
        off = score_offline(sim, path, min_passes)
        t0 = time.time()
        with streamed([path], info, sim.net, key=KEY, work_dir=Path(tmp) / "stream", frame_s=FRAME_S,
                      timeout_s=timeout_s) as sr, db.connect(sr.dsn, autocommit=True) as conn:  # fmt: skip
            db.refresh(conn)  # TimescaleDB: the calibration reads the daily aggregate
            write_references(conn, [(s, v, None, "bench truth") for s, v in sim.refs.items()])
            cal = run_calibration(conn).calibration  # what `roadsense calibrate` runs
            # what the maintenance team reads (segment_scores), every segment with an IRI
            scores = queries.roughest_segments(conn, limit=len(sim.net), min_passes=min_passes)
            rows = pass_rows(conn)
            alerts = read_alerts(conn)
        stream_s = time.time() - t0
    run = off.pop("run")  # every pass and impact: not kept across seeds
    rough = network_figures(sim, scores, min_passes)
    rough["anchor"] = cal.anchor
    # same passes, same references: the gains may differ by float rounding only
    gains = set(cal.gains) & set(run.calibration.gains)
    gain_diff = max((abs(cal.gains[v] / run.calibration.gains[v] - 1) for v in gains), default=0.0)
    return {"roughness": rough, "potholes": network_potholes(sim, [r[1] for r in rows], alerts, min_passes),
            "n_passes": len(rows), "n_alerts": len(alerts), "passes_identical": rows == record_rows(run.passes),
            "alerts": _alert_diff(alerts, run.alerts),
            "gain_max_rel_diff": gain_diff, "gains_same_vehicles": set(cal.gains) == set(run.calibration.gains),
            "frames": sr.frames, "impacts": sr.impacts, "dead_letters": sr.dead_letters, "worker_s": sr.worker_s,
            "stream_s": stream_s, "sim_s": sim.sim_s, "offline": off}  # fmt: skip


def _alert_diff(got: list, want: list) -> dict:
    """Alerts of two runs matched by ``alert_id``: ``same`` (every field equal), ``changed``
    (other revision or evidence), ``only_first``, ``only_second``; ``moved``: alerts of
    ``only_first`` that one of ``only_second`` on the same segment within ``MATCH_M`` matches
    (the id is the position when first confirmed: other evidence first, another id)."""
    a, b = {x.alert_id: x for x in got}, {x.alert_id: x for x in want}
    common = set(a) & set(b)
    same = sum(a[k] == b[k] for k in common)
    left = [b[k] for k in sorted(set(b) - set(a))]
    moved = 0
    for x in sorted((a[k] for k in set(a) - set(b)), key=lambda x: x.alert_id):
        near = [(abs(y.position_m - x.position_m), i) for i, y in enumerate(left)
                if y.segment_id == x.segment_id and abs(y.position_m - x.position_m) <= MATCH_M]  # fmt: skip
        if near:
            left.pop(min(near)[1])
            moved += 1
    return {"same": same, "changed": len(common) - same, "only_first": len(set(a) - set(b)),
            "only_second": len(set(b) - set(a)), "moved": moved}  # fmt: skip


#: headline figures of --through-kafka, in the order printed
_HEADLINE = (("spearman", "roughness", "spearman", ".3f"), ("median_rel_error", "roughness", "median_rel_error", ".3f"),
             ("level_accuracy", "roughness", "level_accuracy", ".3f"), ("segments", "roughness", "n_segments", "d"),
             ("pothole_precision", "potholes", "precision", ".3f"), ("pothole_recall", "potholes", "recall", ".3f"),
             ("pothole_p90_m", "potholes", "location_error_m_p90", ".2f"),
             ("false_at_bumps", "potholes", "false_potholes_at_bumps", "d"))  # fmt: skip


def main_through_kafka(args: argparse.Namespace) -> int:
    from pipeline import stack

    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([1] if args.dev else [2024, 2025])
    families = TRAIN_FAMILIES if args.dev else HOLDOUT_FAMILIES
    fs = max(float(r) for r in args.rates.split(","))
    t0 = time.time()
    info = stack.up()
    results = []
    for seed in seeds:
        res = run_network_through_kafka(seed, args.vehicles, fs, families, (args.trip_km_min, args.trip_km_max),
                                        info=info)  # fmt: skip
        results.append(res)
        off, al = res["offline"], res["alerts"]
        print(f"\n== through Kafka, seed {seed}, {fs:g} Hz, {args.vehicles} vehicles ({', '.join(families)}): "
              f"{res['frames']} frames, {res['impacts']} impacts, dead letters {res['dead_letters']}; simulate "
              f"{res['sim_s']:.0f} s, offline {off['score_s']:.0f} s, worker {res['worker_s']:.0f} s "
              f"(stream + database {res['stream_s']:.0f} s)")  # fmt: skip
        print(f"{'':>18} {'database':>10} {'offline':>10} {'difference':>11}")
        for label, a, b in (("passes", res["n_passes"], off["n_passes"]), ("alerts", res["n_alerts"], off["n_alerts"])):
            print(f"{label:>18} {a:>10d} {b:>10d} {a - b:>+11d}")
        for label, part, key, fmt in _HEADLINE:
            a, b = res[part][key], off[part][key]
            print(f"{label:>18} {a:>10{fmt}} {b:>10{fmt}} {a - b:>+11{fmt}}")
        print(f"passes identical row for row (pseudonym, segment, times, samples, IRI, events): "
              f"{res['passes_identical']}; gains: same vehicles {res['gains_same_vehicles']}, largest relative "
              f"difference {res['gain_max_rel_diff']:.1e}, "
              f"anchor {res['roughness']['anchor']}")  # fmt: skip
        print(f"database {_calibration_text(_calibration(res['potholes']['confidence_real']))}")
        print(f"alerts by id: {al['same']} identical, {al['changed']} with other fields (revision, evidence), "
              f"{al['only_first']} only in the database, {al['only_second']} only offline, of which "
              f"{al['moved']} pairs on the same segment within {MATCH_M:g} m (another id: first confirmed "
              f"on other impacts; stage 2 reads a segment's impacts in partition order, offline in time "
              f"order)")  # fmt: skip
    print(f"\n({time.time() - t0:.0f} s)")
    db_pool, off_pool = _pool(results), _pool([r["offline"] for r in results])
    headline = ("spearman", "median_rel_error", "level_accuracy", "pothole_precision", "pothole_recall",
                "pothole_location_error_m_p90", "false_potholes_at_bumps", "n_segments")  # fmt: skip
    line = {"mode": "through-kafka", "seeds": seeds, "fs": fs, "families": list(families), "vehicles": args.vehicles}
    line.update({k: db_pool[k] for k in headline})
    line.update({f"offline_{k}": off_pool[k] for k in headline})
    line.update({k: db_pool[k] for k in ("n_true_potholes", "n_true_potholes_by_class", "pothole_recall_by_class",
                                         "pothole_confidence_brier", "pothole_confidence_ece")})
    line.update({"n_passes": sum(r["n_passes"] for r in results),
                 "offline_n_passes": sum(r["offline"]["n_passes"] for r in results),
                 "n_alerts": sum(r["n_alerts"] for r in results),
                 "offline_n_alerts": sum(r["offline"]["n_alerts"] for r in results),
                 "passes_identical": all(r["passes_identical"] for r in results),
                 "n_alerts_identical": sum(r["alerts"]["same"] for r in results),
                 "n_alerts_other_id_same_place": sum(r["alerts"]["moved"] for r in results)})  # fmt: skip
    print(_json_line({k: round(v, 4) if isinstance(v, float) else v for k, v in line.items()}))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dev", action="store_true", help="development scenario (seed 1, training families)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--segments", type=int, default=150)
    ap.add_argument("--passes", type=int, default=8)
    ap.add_argument("--vehicles", type=int, default=30)
    ap.add_argument("--references", type=int, default=6, help="segments with a known IRI (anchor); 0 = median gain 1")
    ap.add_argument("--rates", default="100,10")
    ap.add_argument("--network", action="store_true",
                    help="fleet on the real network (simulate_fleet) through pipeline.offline.score_traces")
    ap.add_argument("--through-kafka", action="store_true",
                    help="with --network: also replay the fleet through Kafka, one worker and the database "
                         "(needs the local stack; started if not up) and compare with the offline scorer")
    ap.add_argument("--seeds", default=None, help="--network: comma-separated seeds (default 2024,2025; --dev: 1)")
    ap.add_argument("--rows-out", default=None,
                    help="--network: append one JSON line per scored segment to this file (per-segment analysis)")
    ap.add_argument("--trip-km-min", type=float, default=4.0)
    ap.add_argument("--trip-km-max", type=float, default=8.0)
    args = ap.parse_args(argv)
    if args.through_kafka and not args.network:
        ap.error("--through-kafka needs --network")
    if args.through_kafka:
        return main_through_kafka(args)
    if args.network:
        return main_network(args)
    seed = args.seed if args.seed is not None else (1 if args.dev else 2024)
    families = TRAIN_FAMILIES if args.dev else HOLDOUT_FAMILIES
    t0 = time.time()
    scn = make_scenario(seed, args.segments, families, args.vehicles)
    print(f"seed {seed}, families {families}, {len(scn.fleet)} vehicles, {args.segments} segments x {args.passes} passes")
    results = {}
    for fs in [float(r) for r in args.rates.split(",")]:
        res = run(scn, fs, args.passes, seed, args.references)
        results[fs] = res
        print_report(f"{fs:g} Hz", res)
    print(f"\n({time.time() - t0:.0f} s)")
    main_fs = max(results)
    r, ph = results[main_fs]["calibrated"], results[main_fs]["potholes"]
    line = {
        "fs_hz": main_fs,
        "seed": seed,
        "families": list(families),
        "n_segments": r["n_segments"],
        "spearman": round(r["spearman"], 4),
        "median_rel_error": round(r["median_rel_error"], 4),
        "level_accuracy": round(r["level_accuracy"], 4),
        "pothole_precision": round(ph["precision"], 4),
        "pothole_recall": round(ph["recall"], 4),
        "pothole_recall_felt": round(ph["recall_felt"], 4),
        "pothole_recall_abc_roads": round(ph["recall_on_abc_roads"], 4),
        "pothole_location_error_m_p90": round(ph["location_error_m_p90"], 2),
        "false_potholes_at_bumps": ph["false_potholes_at_bumps"],
        "prior_only_median_rel_error": round(results[main_fs]["prior"]["median_rel_error"], 4),
        "mean_confidence": round(r["mean_confidence"], 3),
    }
    for fs, res in results.items():
        if fs == main_fs:
            continue
        tag = f"{fs:g}hz"
        line[f"{tag}_spearman"] = round(res["calibrated"]["spearman"], 4)
        line[f"{tag}_median_rel_error"] = round(res["calibrated"]["median_rel_error"], 4)
        line[f"{tag}_level_accuracy"] = round(res["calibrated"]["level_accuracy"], 4)
        line[f"{tag}_pothole_precision"] = round(res["potholes"]["precision"], 4)
        line[f"{tag}_pothole_recall"] = round(res["potholes"]["recall"], 4)
        line[f"{tag}_confidence"] = round(res["calibrated"]["mean_confidence"], 3)
    print(_json_line(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
