"""Accuracy of the safety service (issue 6): events, hotspots, before/after.

For each seed, a fleet is simulated with a safety scenario (:mod:`simulator.hotspots`:
background events everywhere, ten hotspots, three busy junctions "fixed" half-way through
the period with their rate halved; grade, mounting misalignment, noise, pothole and hump
impacts), in batches of ``--batch`` vehicles sharing one world (memory), then detected:

* ``--mode pipeline`` (default): the traces are written and scored by
  :func:`pipeline.offline.score_traces`, i.e. ``agents.passes.process_frame`` frame by
  frame (``--frame-s``, default 30 s like the workers' ``ROADSENSE_FRAME_S``; 5 s frames
  cost twice the CPU for the same passes and events), through the wire format, the code
  the Faust workers run: events, their segment and offset, and the passes (map-matched,
  privacy-trimmed) are the pipeline's own records, and the ranking's inputs are built by
  ``pipeline.report.hotspot_inputs_from_records`` as ``roadsense hotspots`` does (the
  integration test checks that the database gives the same ranking). The same simulated
  fleet is also detected in ``direct`` mode (a few % more time) and cached as such, so
  ``--compare`` compares the two on the very same fleet.
* ``--mode direct``: ``agents.harsh_events.detect_harsh_events`` on each trip's samples,
  events placed by the odometer on the simulator's true passes, same 300 m trim. About 5x
  cheaper than ``pipeline`` (~0.1 s of CPU per vehicle of 2 trips, simulation included,
  against ~0.45 s); used for larger exposure and many seeds.

Then:

1. **events**: detections are matched to the simulator's truth (same type, intervals
   overlapping within 0.5 s, one-to-one). Marginal injected events (the truth says they
   barely crossed the definition) are neither required nor counted as false; in pipeline
   mode neither are true events within 300 ± 30 m of a trip's ends (privacy trim). An
   unmatched detection within 1 s of a pothole or hump crossing, and overlapping no true
   manoeuvre of another type, is an impact counted as an event.
2. **hotspots**: ``agents.hotspots.rank_hotspots`` (its defaults) ranks zones over the
   whole period. A top-10 zone is a hit when it lies within 80 m of an injected hotspot (a
   hotspot listed twice counts twice in the precision, once in the recall). The five
   busiest non-hotspot arterial zones must not be in the top 10. Same inputs without the
   neighbour suppression: ``*_no_suppression``.
3. **before/after**: ``agents.before_after`` with priors from a ranking of the before
   period only. Power: the fixed junctions as one programme (rate halved). No change
   (false positives): (a) ``ranked``: the ``--controls`` top zones of the before ranking
   (fixed ones excepted), hotspots or not, picked *because* their before record is bad
   (the regression-to-the-mean trap), tested with the nonparametric EB prior; (b)
   ``hotspot``: every untreated hotspot, picked by the truth and not by its record, tested
   on its exposure-adjusted counts. The untreated hotspots tested with the EB prior anyway
   are reported as a diagnostic (``hotspot_with_eb_prior``).

Ground truth is the simulator's: injected events measured on the true motion, injected
hotspot positions, impact crossing times. The rough-road vertical body response (quarter
car) is replaced by zeros unless ``--full-vertical``: the harsh detector does not read the
vertical axis; the impacts (with their fore-aft shocks) come from :mod:`simulator.impacts`.

Tuning seeds were 1-10; the default reporting seeds are 101-104. ``--cache DIR`` keeps
each seed's detections (keyed by the seed, options and a hash of the detection and
simulation code), so that changes to the ranking or the tests re-evaluate in seconds. Ends
by printing one JSON line. Usage::

    python bench/accuracy_safety.py [--mode pipeline|direct] [--seeds 101 102]
        [--vehicles 1000] [--batch 250] [--workers 1] [--cache /tmp/safety-cache]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.before_after import before_after, before_after_sites, period_variance  # noqa: E402
from agents.harsh_events import EVENT_TYPES, detect_harsh_events  # noqa: E402
from agents.hotspots import attribute_events, rank_hotspots, zoning  # noqa: E402
from agents.passes import PassParams  # noqa: E402
from roadnet import load_network  # noqa: E402
from schemas.frame import DEFAULT_FRAME_S  # noqa: E402
from schemas.tracefile import TRIP_GAP_S  # noqa: E402

TRIM_M = PassParams().trim_m  #: the pipeline's privacy trim at both ends of a trip, m
#: Extra distance (m) either side of the privacy trim inside which a true event is neither
#: required nor counted in ``pipeline`` mode: the pipeline trims on its own odometer and
#: places an event at its start, the bench on the speed integral of the trace.
EDGE_M = 30.0
MATCH_TOL_S = 0.5
HIT_M = 80.0
#: Zones within this distance (m) of a treated junction are left out of the no-change trials.
SPILL_M = 250.0
ARTERIALS = ("trunk", "primary", "secondary", "tertiary")
PSEUDONYM_KEY = "bench-accuracy-safety-key-0123456789"
#: Files whose code decides what ``collect`` returns (the cache key hashes them).
COLLECT_CODE = ("agents", "simulator", "schemas", "pipeline/offline.py", "pipeline/stage1.py", "pipeline/stage2.py",
                "roadnet")  # fmt: skip
#: Bump when ``collect`` itself changes what it returns (the bench file is not hashed, so
#: that editing ``evaluate`` keeps the cache).
COLLECT_VERSION = 2


def _code_hash() -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha1(str(COLLECT_VERSION).encode())
    for part in COLLECT_CODE:
        p = root / part
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            if f.name in ("hotspots.py", "before_after.py") and f.parent.name == "agents":
                continue  # used only by evaluate(): changing them must not invalidate the cache
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _trip_indices(t_s: np.ndarray) -> list[np.ndarray]:
    return np.split(np.arange(len(t_s)), np.flatnonzero(np.diff(t_s) > TRIP_GAP_S) + 1)


def _odometer(t_s: np.ndarray, speed_kmh: np.ndarray) -> np.ndarray:
    """Distance driven (m) at each sample: trapezoidal integral of the speed."""
    return np.concatenate([[0.0], np.cumsum(0.5 * (speed_kmh[1:] + speed_kmh[:-1]) / 3.6 * np.diff(t_s))])


def collect(seed: int, n_vehicles: int, mode: str, full_vertical: bool, days: float, trips: int,
            cache_dir: str | None, batch: int = 1000, fs_hz: float = 50.0, frame_s: float = DEFAULT_FRAME_S) -> dict:  # fmt: skip
    """Simulate one seed and detect: the expensive part, cached on disk when ``cache_dir``.

    The fleet is simulated in batches of ``batch`` vehicles (memory): batch 0 is
    ``simulate_fleet(seed=seed)``, batch ``b`` uses ``seed * 1000 + b`` for its vehicles
    and the same world (hotspots, terrain, potholes, humps, roads) as batch 0.

    Returns plain arrays: detections (``det_*``: vehicle, type, start, duration), located
    events (``ev_*``: type, time, segment index, offset), passes (``pass_seg``,
    ``pass_t``), the truth events (with ``required``: inside the part of a trip the
    output covers), impact crossings, the hotspots and the fix date.
    """
    bkey = "" if batch >= n_vehicles else f"-b{batch}"

    def path_of(m: str) -> Path | None:
        fkey = f"-f{frame_s:g}" if m == "pipeline" else ""  # the direct mode has no frames
        key = f"{m}-s{seed}-v{n_vehicles}{bkey}-d{days:g}-t{trips}-fs{fs_hz:g}{fkey}-{'fv' if full_vertical else 'zv'}-{_code_hash()}"
        return Path(cache_dir) / f"{key}.pkl" if cache_dir else None

    path = path_of(mode)
    if path is not None and path.exists():
        with path.open("rb") as fh:
            return pickle.load(fh)
    # the pipeline's fleet is also detected directly (~5 % more time): `--compare` then
    # compares the two on the very same simulated fleet without simulating it again
    modes = (mode,)
    p_direct = path_of("direct")
    if mode == "pipeline" and not (p_direct is not None and p_direct.exists()):
        modes = ("pipeline", "direct")
    import simulator.fleet as fleet_mod
    from simulator.fleet import DEFAULT_START
    from simulator.hotspots import choose_hotspots

    if not full_vertical:
        fleet_mod.vertical_response = lambda t_s, *a, **k: np.zeros(len(t_s))  # type: ignore[assignment]
    net = load_network()
    date = DEFAULT_START.timestamp() + days * 86400 / 2
    hs = choose_hotspots(net, seed=seed, fixed_at_s=date, fix_factor=0.5)
    # batch 0's road seed (simulate_fleet's first spawned child), shared by all batches
    road_seed = int(np.random.SeedSequence(seed).spawn(1)[0].generate_state(1)[0])
    parts = []
    for b, lo in enumerate(range(0, n_vehicles, batch)):
        nv = min(batch, n_vehicles - lo)
        parts.append(_collect_batch(net, hs, seed if b == 0 else seed * 1000 + b, nv, seed, road_seed if b else None,
                                    modes, days, trips, fs_hz, frame_s))  # fmt: skip
    result = {}
    for m in modes:
        obs: dict = {"seed": seed, "mode": m, "date": date, "n_vehicles": n_vehicles,
                     "hotspots": [(h.id, h.kind, h.x_m, h.y_m, h.fixed_at_s is not None) for h in hs]}  # fmt: skip
        for k in parts[0][m]:
            if isinstance(parts[0][m][k], np.ndarray):
                obs[k] = np.concatenate([p[m][k] for p in parts])
            else:
                obs[k] = round(sum(p[m][k] for p in parts), 1)
        pm = path_of(m)
        if pm is not None:
            pm.parent.mkdir(parents=True, exist_ok=True)
            tmp_path = pm.with_suffix(".tmp")
            with tmp_path.open("wb") as fh:
                pickle.dump(obs, fh)
            tmp_path.replace(pm)
        result[m] = obs
    return result[mode]


def _collect_batch(net, hs: tuple, seed: int, n_vehicles: int, world_seed: int, road_seed: int | None,
                   modes: tuple[str, ...], days: float, trips: int, fs_hz: float, frame_s: float) -> dict[str, dict]:  # fmt: skip
    """Simulate one batch once and detect it in each of ``modes``: mode -> observations."""
    from simulator.fleet import simulate_fleet
    from simulator.hotspots import SafetyScenario

    for mode in modes:
        if mode not in ("pipeline", "direct"):
            raise ValueError(f"{mode=} must be 'pipeline' or 'direct'")
    t0 = time.time()
    fl = simulate_fleet(
        net, n_vehicles=n_vehicles, seed=seed, fs_hz=fs_hz, trips_per_vehicle=trips,
        departure_spread_s=days * 86400 - 4 * 3600, safety=SafetyScenario(hotspots=hs),
        world_seed=world_seed, roughness_seed=road_seed,
    )  # fmt: skip
    t_sim = time.time() - t0
    out = {}
    for mode in modes:
        t1 = time.time()
        part = _detect_direct(net, fl, fs_hz) if mode == "direct" else _detect_pipeline(net, fl, frame_s)
        part.update(_truth_arrays(fl), sim_s=t_sim, score_s=time.time() - t1)
        if mode == "direct":
            part["truth_required"] = np.ones(len(part["truth_type"]), bool)
        out[mode] = part
    return out


def _truth_arrays(fl) -> dict:
    E, imp = fl.truth.events, fl.truth.impacts
    return {
        "truth_vid": np.asarray(E["vehicle_id"], object), "truth_type": np.asarray(E["type"], object),
        "truth_t": np.asarray(E["start_t_s"], float), "truth_dur": np.asarray(E["duration_s"], float),
        "truth_clear": np.asarray(E["clear"], bool),
        "truth_seg": np.asarray(E["segment"], np.int64), "truth_off": np.asarray(E["offset_m"], float),
        "truth_src": np.asarray(E["hotspot"], object),
        "imp_vid": np.asarray(imp.get("vehicle_id", np.zeros(0, object)), object),
        "imp_t": np.asarray(imp.get("t_s", np.zeros(0)), float),
        "imp_kind": np.asarray(imp.get("kind", np.zeros(0, object)), object),
    }  # fmt: skip


def _arrays(dets: list[tuple], ev_rows: list[tuple], pass_seg, pass_t, n_dead: int) -> dict:
    return {
        "det_vid": np.array([r[0] for r in dets], object), "det_type": np.array([r[1] for r in dets], object),
        "det_t": np.array([r[2] for r in dets], float), "det_dur": np.array([r[3] for r in dets], float),
        "ev_type": np.array([r[0] for r in ev_rows], object), "ev_t": np.array([r[1] for r in ev_rows], float),
        "ev_seg": np.array([r[2] for r in ev_rows], np.int64), "ev_off": np.array([r[3] for r in ev_rows], float),
        "pass_seg": np.asarray(pass_seg, np.int64), "pass_t": np.asarray(pass_t, float), "dead_letters": n_dead,
    }  # fmt: skip


def _detect_direct(net, fl, fs_hz: float) -> dict:
    """The detector on each trip's samples, events placed by the odometer on the
    simulator's passes, the pipeline's privacy trim."""
    truth = fl.truth
    dets: list[tuple] = []  # (vehicle, type, start_t, duration_s)
    ev_rows: list[tuple] = []  # (type, t, segment index, offset)
    pass_rows: list[tuple] = []
    for vid, tr in fl.traces.items():
        d = _odometer(tr.t_s, tr.speed_kmh)
        p = truth.passes_of(vid)
        for trip_i, idx in enumerate(_trip_indices(tr.t_s)):
            ab = None if tr.abs_engaged is None else tr.abs_engaged[idx]
            ev, _ = detect_harsh_events(
                tr.accel_long_mps2[idx], tr.accel_lat_mps2[idx], tr.t_s[idx], fs_hz,
                speed_kmh=tr.speed_kmh[idx], abs_engaged=ab, final=True,
            )  # fmt: skip
            dets += [(vid, e.type, e.start_t_s, e.duration_s) for e in ev]
            # placement by the odometer (speed integrated from the pass entry), privacy trim
            lo_d, hi_d = d[idx[0]], d[idx[-1]]
            pm = p["trip"] == trip_i
            d_in = np.interp(p["entry_t_s"][pm], tr.t_s, d)
            d_out = np.interp(p["exit_t_s"][pm], tr.t_s, d)
            keep = (d_in - lo_d >= TRIM_M) & (hi_d - d_out >= TRIM_M)
            pass_rows += [(int(s_), float(te)) for s_, te in zip(p["segment"][pm][keep], p["entry_t_s"][pm][keep])]
            for e in ev:
                de = float(np.interp(e.start_t_s, tr.t_s, d))
                if de - lo_d < TRIM_M or hi_d - de < TRIM_M:
                    continue
                j = np.flatnonzero(pm & (p["entry_t_s"] <= e.start_t_s))
                if len(j) == 0:
                    continue
                j = j[-1]
                off = p["entry_offset_m"][j] + de - float(np.interp(p["entry_t_s"][j], tr.t_s, d))
                seg = int(p["segment"][j])
                ev_rows.append((e.type, e.start_t_s, seg, float(np.clip(off, 0.0, net.length_m[seg]))))
    pass_seg = np.array([r[0] for r in pass_rows], np.int64)
    pass_t = np.array([r[1] for r in pass_rows])
    return _arrays(dets, ev_rows, pass_seg, pass_t, 0)


def _detect_pipeline(net, fl, frame_s: float) -> dict:
    """``pipeline.offline.score_traces`` (``process_frame`` as the workers) on the written
    traces; the ranking's inputs as ``roadsense hotspots`` builds them."""
    from pipeline.offline import score_traces
    from pipeline.pseudonym import Pseudonymiser
    from pipeline.report import hotspot_inputs_from_records
    from simulator import write_fleet

    E = fl.truth.events
    required = np.ones(len(E["type"]), bool)
    dets: list[tuple] = []
    ev_rows: list[tuple] = []
    pseudo = Pseudonymiser(PSEUDONYM_KEY)
    vid_of = {pseudo(v): v for v in fl.traces}
    with tempfile.TemporaryDirectory() as tmp:
        trace_path = write_fleet(fl, tmp, format="parquet")
        run = score_traces([trace_path], net, pseudonymise=pseudo, frame_s=frame_s)
    n_dead = len(run.dead_letters)
    # the ranking's inputs exactly as `roadsense hotspots` builds them from the records
    n_all, ev_seg_r, ev_off_r = hotspot_inputs_from_records(run.passes, run.events, net)
    pass_seg = net.indices_of([p.segment_id for p in run.passes])
    pass_t = np.array([p.entry_time.timestamp() for p in run.passes])
    assert np.array_equal(np.bincount(pass_seg[pass_seg >= 0], minlength=len(net)), n_all)
    for e, s_, o_ in zip(run.events, ev_seg_r, ev_off_r):
        t_e = e.start_time.timestamp()
        dets.append((vid_of[e.vehicle], e.type, t_e, e.duration_s))
        ev_rows.append((e.type, t_e, int(s_), float(o_)))
    # a true event is required only where the output covers the trip: beyond the
    # privacy trim at both ends (with EDGE_M of slack for the two odometers)
    for vid, tr in fl.traces.items():
        d = _odometer(tr.t_s, tr.speed_kmh)
        m = np.flatnonzero(E["vehicle_id"] == vid)
        de = np.interp(E["start_t_s"][m], tr.t_s, d)
        for idx in _trip_indices(tr.t_s):
            inside = (E["start_t_s"][m] >= tr.t_s[idx[0]]) & (E["start_t_s"][m] <= tr.t_s[idx[-1]])
            lo_d, hi_d = d[idx[0]], d[idx[-1]]
            edge = (de - lo_d < TRIM_M + EDGE_M) | (hi_d - de < TRIM_M + EDGE_M)
            required[m[inside & edge]] = False
    out = _arrays(dets, ev_rows, pass_seg, pass_t, n_dead)
    out["truth_required"] = required
    return out


def match_events(obs: dict) -> tuple[Counter, list]:
    """Detections vs truth per vehicle: same type, intervals overlapping within
    ``MATCH_TOL_S``, one-to-one, nearest start first. Returns counts by ``type:tp|fp|fn|
    ignored`` and ``impact_counted``, and the unmatched detections near an impact."""
    counts: Counter = Counter()
    near_impacts: list = []
    t_order = np.argsort(obs["truth_vid"].astype(str), kind="stable")
    tv = obs["truth_vid"][t_order].astype(str)
    i_order = np.argsort(obs["imp_vid"].astype(str), kind="stable")
    iv = obs["imp_vid"][i_order].astype(str)
    dv = obs["det_vid"].astype(str)
    for vid in np.unique(np.concatenate([dv, tv])):
        m = t_order[np.searchsorted(tv, vid, "left"):np.searchsorted(tv, vid, "right")]
        tt, ts, td = obs["truth_type"][m], obs["truth_t"][m], obs["truth_dur"][m]
        counted = obs["truth_clear"][m] & obs["truth_required"][m]
        mi = i_order[np.searchsorted(iv, vid, "left"):np.searchsorted(iv, vid, "right")]
        imp_t = obs["imp_t"][mi]
        used = np.zeros(len(m), bool)
        for k in np.flatnonzero(dv == vid):
            typ, t0, dur = obs["det_type"][k], obs["det_t"][k], obs["det_dur"][k]
            ok = (tt == typ) & ~used & (ts - MATCH_TOL_S <= t0 + dur) & (t0 - MATCH_TOL_S <= ts + td)
            if ok.any():
                j = np.flatnonzero(ok)[np.argmin(np.abs(ts[ok] - t0))]
                used[j] = True
                counts[f"{typ}:{'tp' if counted[j] else 'ignored'}"] += 1
                continue
            counts[f"{typ}:fp"] += 1
            # an unmatched detection overlapping a true manoeuvre of another type is a type
            # confusion (a swerve read as a corner), not an impact counted as an event
            confused = np.any((ts - MATCH_TOL_S <= t0 + dur) & (t0 - MATCH_TOL_S <= ts + td))
            if len(imp_t) and np.min(np.abs(imp_t - t0)) < 1.0 + dur and not confused:
                counts["impact_counted"] += 1
                j = int(np.argmin(np.abs(imp_t - t0)))
                near_impacts.append((vid, typ, round(float(t0), 2), round(float(dur), 2), str(obs["imp_kind"][mi][j]), round(float(imp_t[j] - t0), 2)))
        for j in np.flatnonzero(~used & counted):
            counts[f"{tt[j]}:fn"] += 1
    return counts, near_impacts


def evaluate(obs: dict, n_controls: int, period_var: bool = True) -> dict:
    """Hotspot ranking and before/after on one seed's located events and passes."""
    net = load_network()
    counts, near_impacts = match_events(obs)
    ps, pt = obs["pass_seg"], obs["pass_t"]
    ps_ok = ps >= 0
    ev_seg, ev_off, ev_t = obs["ev_seg"], obs["ev_off"], obs["ev_t"]
    n_all = np.bincount(ps[ps_ok], minlength=len(net)).astype(float)
    rk = rank_hotspots(n_all, ev_seg, ev_off, net)
    zn = zoning(net)
    hx = np.array([h[2] for h in obs["hotspots"]])
    hy = np.array([h[3] for h in obs["hotspots"]])
    n_hs = len(hx)

    def hotspot_of(zone: int) -> int:
        dist = np.hypot(zn.zone_x_m[zone] - hx, zn.zone_y_m[zone] - hy)
        return int(np.argmin(dist)) if dist.min() <= HIT_M else -1

    top = [int(z) for z in rk.zone[:10]]
    hit = [hotspot_of(z) for z in top]
    precision = float(np.mean([h >= 0 for h in hit]))
    recall = len({h for h in hit if h >= 0}) / n_hs
    # the same inputs without non-maximum suppression of neighbouring zones, for comparison
    hit0 = [hotspot_of(int(z)) for z in rank_hotspots(n_all, ev_seg, ev_off, net, suppress_m=0.0).zone[:10]]
    precision0 = float(np.mean([h >= 0 for h in hit0]))
    recall0 = len({h for h in hit0 if h >= 0}) / n_hs
    passes_z, _ = zn.exposure(n_all)
    ev_zone = attribute_events(zn, ev_seg, ev_off)
    y_z = np.bincount(ev_zone[ev_zone >= 0], minlength=len(zn))
    art = [z for z in np.argsort(-passes_z) if zn.zone_class[z] in ARTERIALS and hotspot_of(int(z)) < 0][:5]
    busy_in_top = int(sum(z in top for z in art))

    def zone_of_hotspot(k: int) -> int:
        dist = np.hypot(zn.zone_x_m - hx[k], zn.zone_y_m - hy[k])
        return int(np.argmin(np.where(zn.zone_kind == ("segment" if obs["hotspots"][k][1] == "school_zone" else "junction"), dist, np.inf)))

    pos = {int(z): k for k, z in enumerate(rk.zone)}
    hotspot_rows = [(obs["hotspots"][k][0], int(y_z[z]), round(float(passes_z[z]), 1), pos.get(z, -1) + 1)
                    for k, z in enumerate(zone_of_hotspot(k) for k in range(n_hs))]  # fmt: skip

    # ---- before/after
    date = obs["date"]
    before = pt < date
    n_b = np.bincount(ps[ps_ok & before], minlength=len(net)).astype(float)
    n_a = np.bincount(ps[ps_ok & ~before], minlength=len(net)).astype(float)
    _, vkm_b = zn.exposure(n_b)
    _, vkm_a = zn.exposure(n_a)
    eb_before = ev_t < date
    # priors from a ranking of the before period only (what an analyst has at the date)
    rk_b = rank_hotspots(n_b, ev_seg[eb_before], ev_off[eb_before], net)
    pos_b = {int(z): i for i, z in enumerate(rk_b.zone)}
    y_b = np.bincount(ev_zone[(ev_zone >= 0) & eb_before], minlength=len(zn))
    y_a = np.bincount(ev_zone[(ev_zone >= 0) & ~eb_before], minlength=len(zn))

    def testable(zone: int) -> bool:  # exposure in both periods and a fitted prior
        return vkm_b[zone] > 0 and vkm_a[zone] > 0 and zone in pos_b and rk_b.group_rate_per_vkm[pos_b[zone]] > 0

    def study(zone: int, selected_on_record: bool, tau2: float) -> dict:
        """A site picked from its before-period record (the ranking) gets the EB prior
        (regression to the mean); a site picked for another reason is compared on its own
        exposure-adjusted counts (no selection, so no regression-to-the-mean bias)."""
        kw = dict(prior_rates=rk_b.prior_rates(pos_b[zone]), prior_weights=rk_b.multiplier_weights) if selected_on_record else {}
        if tau2 is not None:  # the analyst's comparison group: trend and period variance
            kw.update(period_variance=tau2, comparison=comparison)
        return before_after(int(y_b[zone]), vkm_b[zone], int(y_a[zone]), vkm_a[zone], **kw).as_dict()

    # no change: (1) "ranked": the n_controls top zones of the before ranking (treated ones
    # excepted), hotspots or not: picked *because* their before record is bad, the
    # regression-to-the-mean trap, so EB; (2) "hotspot": every untreated injected hotspot,
    # picked by the truth, not by its record. Zones without exposure in a period or
    # without a fitted prior are not testable.
    # a no-change zone must be out of reach of the treated junctions' events: their harsh
    # brakes start 8-30 m plus a braking distance (up to ~60 m) before the node, i.e. in the
    # next street's zone, so zones within SPILL_M of a treated junction are not nulls
    fixed_hs = [k for k, h in enumerate(obs["hotspots"]) if h[4]]
    fx, fy = hx[fixed_hs], hy[fixed_hs]

    def treated(zone: int) -> bool:
        return bool(np.min(np.hypot(zn.zone_x_m[zone] - fx, zn.zone_y_m[zone] - fy)) <= SPILL_M) if len(fixed_hs) else False

    # a place's own variation between the two periods, measured on every zone out of the
    # treated junctions' reach: what an analyst can compute from the same database
    comparison_zones = np.array([z for z in range(len(zn)) if vkm_b[z] > 0 and vkm_a[z] > 0 and not treated(z)])
    cz = comparison_zones
    pv = period_variance(y_b[cz], vkm_b[cz], y_a[cz], vkm_a[cz])
    comparison = (float(y_b[cz].sum()), float(vkm_b[cz].sum()), float(y_a[cz].sum()), float(vkm_a[cz].sum()))
    tau2 = pv.variance if period_var else None
    # the treated junctions were chosen as the busiest, not for their record
    fixed = [z for z in (zone_of_hotspot(k) for k, h in enumerate(obs["hotspots"]) if h[4]) if testable(z)]
    if fixed:
        kw = dict(period_variance=tau2, comparison=comparison) if tau2 is not None else {}
        power_trial = before_after_sites(y_b[fixed], vkm_b[fixed], y_a[fixed], vkm_a[fixed], **kw).as_dict()
        power_trial_eb = before_after_sites(
            y_b[fixed], vkm_b[fixed], y_a[fixed], vkm_a[fixed], **kw,
            prior_rates=np.array([rk_b.prior_rates(pos_b[z]) for z in fixed]), prior_weights=rk_b.multiplier_weights,
        ).as_dict()  # fmt: skip
    else:  # no treated junction with exposure in both periods (tiny fleets): nothing to test
        nan = float("nan")
        power_trial = power_trial_eb = {"changed": False, "direction": "none", "events_before": 0, "events_after": 0,
                                        "rate_ratio": nan, "ratio_lo": nan, "ratio_hi": nan, "p_value": nan}  # fmt: skip
    ranked = [int(z) for z in rk_b.zone if not treated(int(z)) and testable(int(z))][:n_controls]
    untreated = [z for z in (zone_of_hotspot(k) for k, h in enumerate(obs["hotspots"]) if not h[4]) if testable(z)]
    # an untreated hotspot high in the ranking is in both lists: two trials (two ways of
    # picking it) but one place, so main() also counts distinct zones
    null_trials = [dict(study(z, True, tau2), site="ranked", zone=z) for z in ranked]
    null_trials += [dict(study(z, False, tau2), site="hotspot", zone=z) for z in untreated]
    # diagnostics: the same without the period variance; the untreated hotspots with the
    # EB prior anyway (the wrong tool there)
    null_trials_poisson = [dict(study(z, True, None), site="ranked") for z in ranked]
    null_trials_poisson += [dict(study(z, False, None), site="hotspot") for z in untreated]
    null_trials_hotspot_eb = [study(z, True, tau2) for z in untreated]
    return {
        "seed": obs["seed"],
        "counts": dict(counts),
        "near_impacts": near_impacts,
        "n_truth_events": int(len(obs["truth_type"])),
        "n_impacts": int(len(obs["imp_t"])),
        "precision_at_10": precision,
        "recall": recall,
        "precision_at_10_no_suppression": precision0,
        "recall_no_suppression": recall0,
        "busiest_arterials_in_top10": busy_in_top,
        "top10": [(str(rk.zone_id[k]), int(rk.n_events[k]), float(round(rk.eb_rate_per_vkm[k], 3)), hit[k]) for k in range(len(top))],
        "hotspots": hotspot_rows,
        "power_trial": power_trial,
        "power_trial_eb": power_trial_eb,
        "null_trials": null_trials,
        "null_trials_poisson": null_trials_poisson,
        "null_trials_hotspot_eb": null_trials_hotspot_eb,
        "period_variance": pv.as_dict(),
        "n_passes": int(len(ps)),
        "n_events_located": int(len(ev_t)),
        "sim_s": obs["sim_s"],
        "score_s": obs["score_s"],
        "dead_letters": obs["dead_letters"],
    }


def run_seed(seed: int, n_vehicles: int, mode: str, full_vertical: bool, days: float, trips: int,
             cache_dir: str | None, n_controls: int, batch: int, fs_hz: float, frame_s: float = DEFAULT_FRAME_S) -> dict:  # fmt: skip
    return evaluate(collect(seed, n_vehicles, mode, full_vertical, days, trips, cache_dir, batch, fs_hz, frame_s), n_controls)


def f1(c: Counter, t: str) -> tuple[float, float, float]:
    tp, fp, fn = c[f"{t}:tp"], c[f"{t}:fp"], c[f"{t}:fn"]
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def compare_modes(seed: int, n_vehicles: int, full_vertical: bool, days: float, trips: int, cache_dir: str | None,
                  batch: int, fs_hz: float, frame_s: float = DEFAULT_FRAME_S) -> dict:  # fmt: skip
    """The same fleet through the pipeline and through the direct path: how much of the
    ranking is the same (top-10 zones in common), and the located events and passes."""
    a = collect(seed, n_vehicles, "pipeline", full_vertical, days, trips, cache_dir, batch, fs_hz, frame_s)
    b = collect(seed, n_vehicles, "direct", full_vertical, days, trips, cache_dir, batch, fs_hz)
    net = load_network()
    zn = zoning(net)
    tops, found = [], []
    for o in (a, b):
        ps = o["pass_seg"]
        n_all = np.bincount(ps[ps >= 0], minlength=len(net)).astype(float)
        top = rank_hotspots(n_all, o["ev_seg"], o["ev_off"], net).zone[:10]
        tops.append(top)
        hx = np.array([h[2] for h in o["hotspots"]])
        hy = np.array([h[3] for h in o["hotspots"]])
        d = np.hypot(zn.zone_x_m[top][:, None] - hx[None, :], zn.zone_y_m[top][:, None] - hy[None, :])
        found.append(sorted({int(k) for k in np.argmin(d, axis=1)[d.min(axis=1) <= HIT_M]}))
    # the same place can be a different zone id (a junction vs the street next to it)
    d = np.hypot(zn.zone_x_m[tops[0]][:, None] - zn.zone_x_m[tops[1]][None, :], zn.zone_y_m[tops[0]][:, None] - zn.zone_y_m[tops[1]][None, :])
    return {"seed": seed, "top10_common": len(set(tops[0].tolist()) & set(tops[1].tolist())),
            "top10_same_place_80m": int((d.min(axis=1) <= HIT_M).sum()),
            "hotspots_found": {"pipeline": found[0], "direct": found[1]}, "same_hotspots_found": found[0] == found[1],
            "events_located": (len(a["ev_t"]), len(b["ev_t"])), "passes": (len(a["pass_t"]), len(b["pass_t"]))}  # fmt: skip


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``k / n``."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(float(c - h), 4), round(float(c + h), 4))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103, 104])
    ap.add_argument("--vehicles", type=int, default=1000)
    ap.add_argument("--days", type=float, default=28.0, help="period length, days (the fix is at its middle)")
    ap.add_argument("--trips", type=int, default=2, help="trips per vehicle over the period")
    ap.add_argument("--mode", choices=("pipeline", "direct"), default="pipeline",
                    help="pipeline: pipeline.offline.score_traces (process_frame, as the workers); "
                         "direct: agents.harsh_events on each trip's samples, truth passes")  # fmt: skip
    ap.add_argument("--controls", type=int, default=20, help="no-change zones per seed from the top of the before ranking")
    ap.add_argument("--cache", default=None, help="directory caching each seed's detections (keyed by code hash)")
    ap.add_argument("--batch", type=int, default=1000, help="vehicles simulated at a time (memory: ~3.5 GB per 1000 at 50 Hz)")
    ap.add_argument("--fs", type=float, default=50.0, help="inertial sample rate, Hz (50: pothole shocks resolved)")
    ap.add_argument("--frame-s", type=float, default=DEFAULT_FRAME_S,
                    help="pipeline mode: seconds of samples per frame (the workers' default, ROADSENSE_FRAME_S)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--full-vertical", action="store_true")
    ap.add_argument("--compare", action="store_true",
                    help="also run the other mode on the same fleets: top-10 zones in common, events, passes")  # fmt: skip
    args = ap.parse_args(argv)
    t0 = time.time()
    n = len(args.seeds)
    rep = lambda x: [x] * n  # noqa: E731
    with ProcessPoolExecutor(max_workers=args.workers) as ex:
        res = list(ex.map(run_seed, args.seeds, rep(args.vehicles), rep(args.mode), rep(args.full_vertical),
                          rep(args.days), rep(args.trips), rep(args.cache), rep(args.controls), rep(args.batch),
                          rep(args.fs), rep(args.frame_s)))  # fmt: skip
    comparison = None
    if args.compare:
        with ProcessPoolExecutor(max_workers=args.workers) as ex:
            comparison = list(ex.map(compare_modes, args.seeds, rep(args.vehicles), rep(args.full_vertical), rep(args.days),
                                     rep(args.trips), rep(args.cache), rep(args.batch), rep(args.fs),
                                     rep(args.frame_s)))  # fmt: skip
    c: Counter = Counter()
    for r in res:
        c.update(r["counts"])
    by_type = {t: dict(zip(("precision", "recall", "f1"), (round(x, 4) for x in f1(c, t)))) for t in EVENT_TYPES}
    for t in EVENT_TYPES:
        by_type[t].update(tp=c[f"{t}:tp"], fp=c[f"{t}:fp"], fn=c[f"{t}:fn"], ignored=c[f"{t}:ignored"])
    for r in res:
        pt = r["power_trial"]
        print(
            f"seed {r['seed']}: passes {r['n_passes']}, located events {r['n_events_located']}, "
            f"P@10 {r['precision_at_10']:.2f}, recall {r['recall']:.2f}, "
            f"busy arterials in top 10: {r['busiest_arterials_in_top10']}; fixed junctions: before {pt['events_before']}, "
            f"after {pt['events_after']}, ratio {pt['rate_ratio']:.2f} [{pt['ratio_lo']:.2f}, {pt['ratio_hi']:.2f}], "
            f"p={pt['p_value']:.2g}; null claims {sum(n['changed'] for n in r['null_trials'])}/{len(r['null_trials'])}"
            f" (without period variance {sum(n['changed'] for n in r['null_trials_poisson'])}; "
            f"tau2 {r['period_variance']['variance']:.3f}, dispersion {r['period_variance']['dispersion']:.2f} "
            f"over {r['period_variance']['n_sites']} zones)"
            f" (sim {r['sim_s']} s, detection {r['score_s']} s, dead letters {r['dead_letters']})",
            file=sys.stderr,
        )
        print(f"  top10 (zone, events, EB rate, hotspot): {r['top10']}", file=sys.stderr)
        print(f"  hotspots (id, events, passes, rank): {r['hotspots']}", file=sys.stderr)
        for x in r["near_impacts"]:
            print(f"  impact counted as event: {x}", file=sys.stderr)
    nulls = [n for r in res for n in r["null_trials"]]
    n_fp = int(sum(n["changed"] for n in nulls))
    fp_by_site = {s: f"{sum(n['changed'] for n in nulls if n['site'] == s)}/{sum(n['site'] == s for n in nulls)}"
                  for s in ("ranked", "hotspot")}  # fmt: skip
    by_zone: dict = {}
    for r in res:
        for t in r["null_trials"]:
            key = (r["seed"], t["zone"])
            by_zone[key] = by_zone.get(key, False) or bool(t["changed"])
    heb = [n for r in res for n in r["null_trials_hotspot_eb"]]
    n_fp_poisson = int(sum(n["changed"] for r in res for n in r["null_trials_poisson"]))
    fp_by_site["hotspot_with_eb_prior"] = f"{sum(n['changed'] for n in heb)}/{len(heb)}"
    out = {
        "mode": args.mode,
        "f1_min_by_type": round(min(v["f1"] for v in by_type.values()), 4),
        "f1_by_type": by_type,
        "impacts_counted_as_events": int(c["impact_counted"]),
        "n_impacts": int(sum(r["n_impacts"] for r in res)),
        "hotspot_precision_at_10": round(float(np.mean([r["precision_at_10"] for r in res])), 4),
        "hotspot_recall": round(float(np.mean([r["recall"] for r in res])), 4),
        "hotspot_precision_at_10_by_seed": [r["precision_at_10"] for r in res],
        "hotspot_recall_by_seed": [r["recall"] for r in res],
        "hotspot_precision_at_10_no_suppression": round(float(np.mean([r["precision_at_10_no_suppression"] for r in res])), 4),
        "hotspot_recall_no_suppression": round(float(np.mean([r["recall_no_suppression"] for r in res])), 4),
        "busiest_arterials_in_top10": int(sum(r["busiest_arterials_in_top10"] for r in res)),
        "before_after_power": round(float(np.mean([r["power_trial"]["changed"] and r["power_trial"]["direction"] == "decrease" for r in res])), 4),
        "before_after_power_eb": round(float(np.mean([r["power_trial_eb"]["changed"] and r["power_trial_eb"]["direction"] == "decrease" for r in res])), 4),
        "before_after_false_positive_rate": round(n_fp / max(len(nulls), 1), 4),
        "before_after_false_positive_ci95": wilson(n_fp, len(nulls)),
        "before_after_false_positives_by_site": fp_by_site,
        "before_after_null_trials": len(nulls),
        "before_after_false_positive_rate_distinct_zones": round(sum(by_zone.values()) / max(len(by_zone), 1), 4),
        "before_after_null_zones": len(by_zone),
        "before_after_false_positive_rate_without_period_variance": round(n_fp_poisson / max(len(nulls), 1), 4),
        "period_variance_by_seed": [round(r["period_variance"]["variance"], 4) for r in res],
        "period_dispersion_by_seed": [round(r["period_variance"]["dispersion"], 3) for r in res],
        "seeds": args.seeds,
        "vehicles_per_seed": args.vehicles,
        "batch": args.batch,
        "fs_hz": args.fs,
        "frame_s": args.frame_s if args.mode == "pipeline" or args.compare else None,
        "days": args.days,
        "trips_per_vehicle": args.trips,
        "passes_per_seed": round(float(np.mean([r["n_passes"] for r in res]))),
        "dead_letters": int(sum(r["dead_letters"] for r in res)),
        "full_vertical": args.full_vertical,
        "runtime_s": round(time.time() - t0, 1),
    }
    if comparison is not None:
        out["pipeline_vs_direct"] = comparison
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
