"""Roughness estimator variants on a simulated fleet, without the map matcher (analysis).

    TRIMS="0,0;3,0" BANKS="0.5,1,2,4,8,20" .venv/bin/python bench/roughness_variants.py SEED [ho]

``simulator.simulate_fleet`` (60 vehicles, 4-8 km trips, training families, or the hold-out
families with ``ho``) as the network bench, but each pass is cut from the vehicle's
continuous stream at the simulator's true entry and exit times (no GPS, no map matching:
about 2 min a seed instead of 5), then the pipeline's calibration (``agents.scores
.calibrate``, 6 reference streets chosen as the bench does) and aggregate (median of
per-vehicle means, segments with >= 5 passes). Variants:

* ``cur``: the estimator's per-sample terms (``agents.roughness._bands``, ``_k_of_speed``);
* ``bank<edges>``: a band-wise estimate, octave (or other) bands with edges in Hz, each
  band's ``y_k^2 / (v K_k(v))`` weighted by the Golden Car's share of that band's spatial
  frequencies at the sample's speed (the "deconvolution" hypothesis; not kept);
* ``trim<start>,<end>``: the first / last metres of each pass left out of the windows
  (measured here before ``ENTRY_SKIP_M``; with the current module the windows of ``cur``
  are built here, so ``trim0,0`` is the estimator without its entry skip).

Prints, per variant on the segments every variant scored: spearman, median relative error,
level accuracy, accuracy and median |log error| below 30 m, and writes the segment rows to
``$OUT/fast_<seed>_<family>_<fs>.pkl`` (``OUT`` default /tmp).
"""
import sys, os, pickle
import numpy as np
from collections import defaultdict
from scipy import signal, integrate, stats
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from roadnet import load_network
from simulator import simulate_fleet
from simulator.quarter_car import TRAIN_FAMILIES, HOLDOUT_FAMILIES
from agents import roughness as R
from agents.iri import golden_car_response
from agents.scores import calibrate

def bank_tables(fs, edges):
    f = np.linspace(1e-3, fs / 2, 20001)
    sos = [signal.butter(2, [lo, hi], btype="bandpass", fs=fs, output="sos") for lo, hi in zip(edges[:-1], edges[1:])]
    H = np.array([np.abs(signal.sosfreqz(s, worN=f, fs=fs)[1]) ** 2 for s in sos])
    _, haa = signal.sosfreqz(signal.butter(4, 0.4 * fs, fs=fs * 4, output="sos"), worN=f, fs=fs * 4)
    base = R._body_accel_response(f, R.NOMINAL_VEHICLE) ** 2 * np.abs(haa) ** 2
    P = H / H.sum(0)
    P[:, f < edges[0]] = 0; P[0, f < edges[0]] = 1
    P[:, f > edges[-1]] = 0; P[-1, f > edges[-1]] = 1
    speeds = np.geomspace(0.5, 50, 120)
    logK = np.empty((len(sos), speeds.size)); W = np.empty_like(logK)
    nn = np.linspace(1e-4, 20, 40001); g = golden_car_response(nn, moving_average=True) ** 2
    for i, sp in enumerate(speeds):
        n = f / sp
        w = np.cos(np.pi * n * R.NOMINAL_VEHICLE["wheelbase_m"]) ** 2 * np.sinc(n * R.NOMINAL_VEHICLE["contact_m"]) ** 2
        logK[:, i] = np.log(integrate.trapezoid(H * (base * w / (2 * np.pi * f) ** 2), f, axis=1))
        Pn = np.array([np.interp(nn * sp, f, p) for p in P])
        W[:, i] = integrate.trapezoid(Pn * g, nn, axis=1)
    W /= W.sum(0)
    white = integrate.trapezoid(H, f, axis=1) / (fs / 2)
    return sos, np.log(speeds), logK, W, white

def terms_cur(a, v, fs):
    band, hf = R._bands(fs)
    y = signal.sosfilt(band, a, zi=signal.sosfilt_zi(band) * a[0])[0]
    vm = np.maximum(v, 1e-3); mov = v >= 1.0
    inv = np.where(mov, 1.0 / (vm * R._k_of_speed(v, fs)), 0.0)
    return y**2 * inv, inv

def make_terms_bank(fs, edges):
    sos, lv_, logK, W, white = bank_tables(fs, edges)
    _, _, white_band, _ = R._k_table(fs)
    def f(a, v, fs_):
        vm = np.maximum(v, 1e-3); mov = (v >= 1.0).astype(float)
        lv = np.log(np.clip(vm, 0.5, 50))
        q = np.zeros_like(a); nw = np.zeros_like(a)
        for k, s in enumerate(sos):
            y = signal.sosfilt(s, a, zi=signal.sosfilt_zi(s) * a[0])[0]
            c = np.interp(lv, lv_, W[k]) / (vm * np.exp(np.interp(lv, lv_, logK[k])))
            q += c * y**2; nw += c * white[k]
        return q * mov, mov * nw / white_band
    return f

def pass_estimate(q, inv, v, yn2, fs, trim0=0.0, trim1=0.0):
    if trim0 or trim1:
        dd = np.concatenate([[0.0], np.cumsum(v[:-1] / fs)]); tot = float(np.sum(v) / fs)
        if tot - trim0 - trim1 >= 20.0:
            m = (dd >= trim0) & (dd <= tot - trim1)
            q, inv, v, yn2 = q[m], inv[m], v[m], yn2[m]
    n = q.size
    mov = v >= 1.0
    d = np.concatenate([[0.0], np.cumsum(v[:-1] / fs)])
    dist = float(np.sum(v) / fs)
    w = np.floor(d / R.WINDOW_M).astype(int); last = int(w[-1])
    cnt = np.bincount(w, mov.astype(float), last + 1)
    sq = np.bincount(w, q, last + 1); si = np.bincount(w, inv, last + 1)
    sv = np.bincount(w, v, last + 1); na = np.bincount(w, minlength=last + 1).astype(float)
    keep = cnt[:last] > 0
    feats = R.RoughnessFeatures(fs=fs, n_samples=n, distance_m=dist, sum_q=float(q.sum()), n_q=int(mov.sum()),
        sum_inv_vk=float(inv.sum()), sum_sq_band=0.0, sum_sq_noise=float(yn2.sum()), max_abs_band_mps2=0.0,
        window_q=(sq[:last] / np.maximum(cnt[:last], 1))[keep], window_inv_vk=(si[:last] / np.maximum(cnt[:last], 1))[keep],
        window_speed_mps=(sv[:last] / np.maximum(na[:last], 1))[keep])
    part = R.RoughnessState(features=feats, band_zi=np.zeros((1, 2)), noise_zi=None, window_pos_m=last * R.WINDOW_M,
        partial_sum_q=float(sq[last]), partial_n=int(cnt[last]), partial_inv_vk=float(si[last]),
        partial_sum_v=float(sv[last]), partial_n_all=int(na[last]))
    return R.estimate_from_features(feats, partial=part)[0]

def main():
    seed = int(sys.argv[1]); fams = HOLDOUT_FAMILIES if (len(sys.argv) > 2 and sys.argv[2] == "ho") else TRAIN_FAMILIES
    fs = float(os.environ.get("FS", "100"))
    net = load_network()
    fleet = simulate_fleet(net, n_vehicles=60, seed=seed, fs_hz=fs, vehicle_families=fams, trip_km=(4.0, 8.0))
    tr = fleet.truth
    variants = {"cur": terms_cur}
    for spec in [x for x in os.environ.get("BANKS", "").split(";") if x]:
        variants["bank" + spec] = make_terms_bank(fs, np.array([float(x) for x in spec.split(",")]))
    trims = [tuple(float(y) for y in x.split(",")) for x in os.environ.get("TRIMS", "0,0").split(";")]
    _, hf = R._bands(fs)
    P = tr.passes
    pv = np.asarray(P["vehicle_id"]).astype(str); ps = np.asarray(P["segment_id"]).astype(str)
    t0s = np.asarray(P["entry_t_s"], float); t1s = np.asarray(P["exit_t_s"], float)
    rows = defaultdict(list)  # variant -> (veh, seg, iri)
    for vid, trc in fleet.traces.items():
        a = np.asarray(trc.accel_vert_mps2, float); v = np.asarray(trc.speed_kmh, float) / 3.6; t = np.asarray(trc.t_s, float)
        yn2 = np.zeros_like(a)
        if hf is not None:
            yn2 = signal.sosfilt(hf, a, zi=signal.sosfilt_zi(hf) * a[0])[0] ** 2
        terms = {k: fn(a, v, fs) for k, fn in variants.items()}
        for j in np.flatnonzero(pv == vid):
            i0, i1 = np.searchsorted(t, [t0s[j], t1s[j]])
            if i1 - i0 < 5: continue
            for k, (q, inv) in terms.items():
                for tt in trims:
                    e = pass_estimate(q[i0:i1], inv[i0:i1], v[i0:i1], yn2[i0:i1], fs, *tt)
                    if np.isfinite(e): rows[f"{k} trim{tt[0]:g},{tt[1]:g}"].append((vid, ps[j], e))
    # refs: as the bench
    drove = defaultdict(int)
    for s in ps: drove[s] += 1
    def true_iri(i):
        x = float(tr.iri_m_per_km[i]); return x if np.isfinite(x) else float(tr.surface.truth(i).iri_m_per_km)
    long_enough = [s for s in sorted(drove, key=lambda s: (-drove[s], s)) if net.length_m[net.index_of(s)] >= 100]
    refs = {s: true_iri(net.index_of(s)) for s in long_enough[:6]}
    out = {}
    for k, rr in rows.items():
        acc = defaultdict(list)
        for vid, s, e in rr: acc[(vid, s)].append(e)
        keys = sorted(acc)
        means = np.array([np.mean(acc[x]) for x in keys])
        cal = calibrate(means, [x[0] for x in keys], [x[1] for x in keys], reference_iri=refs)
        per = defaultdict(list); npass = defaultdict(int)
        for (vid, s) in keys: per[s].append(np.mean(acc[(vid, s)]) / cal.gain_of(vid)); npass[s] += len(acc[(vid, s)])
        seg_rows = []
        for s, m in per.items():
            if npass[s] < 5 or s in refs: continue
            i = net.index_of(s)
            seg_rows.append((s, float(net.length_m[i]), true_iri(i), float(np.median(m))))
        out[k] = seg_rows
    pickle.dump(out, open(os.path.join(os.environ.get("OUT", "/tmp"), f"fast_{seed}_{fams[0]}_{int(fs)}.pkl"), "wb"))
    summarize(out, f"seed {seed} {fams[0]} fs {fs:g}")

def summarize(out, label):
    lv = lambda x: np.digitize(x, [2.5, 4.0])
    common = set.intersection(*[{r[0] for r in sr} for sr in out.values()])
    for k, sr in out.items():
        sr = [r for r in sr if r[0] in common]
        L = np.array([r[1] for r in sr]); T = np.array([r[2] for r in sr]); E = np.array([r[3] for r in sr])
        le = np.log(E / T); ok = lv(E) == lv(T)
        sh = L < 30
        print(f"{label} {k:>22}: n {len(sr)} spearman {stats.spearmanr(T, E).statistic:.3f} medrel {np.median(np.abs(E - T) / T):.3f} "
              f"acc {ok.mean():.3f} acc<30 {ok[sh].mean():.3f} MAD<30 {np.median(np.abs(le[sh])):.3f} bias {np.median(le):+.3f}")
if __name__ == "__main__":
    main()
