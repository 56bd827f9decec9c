"""Fit and check the confidence of pothole alerts: the probability that an alert is a real hole.

Usage::

    # recordings of bench/accuracy_roughness.py --network runs (bench/pothole_replay.py record)
    python bench/pothole_replay.py record /tmp/rec --network --vehicles 60 --rates 100 --dev --seeds 1,3,4,5,6,7
    python bench/pothole_replay.py record /tmp/rec --network --vehicles 60 --rates 100 --seeds 2127,...,2136
    python bench/pothole_confidence.py /tmp/rec --seeds 1,3,4,5,6,7,2127,...,2136

Stage 2 is replayed on each recording (``pipeline.offline.confirm_potholes``, as the stream
delivers). Every final alert is labelled as the accuracy bench does (a true hole within
``MATCH_M``) and described by the evidence of its last confirmation: distinct vehicles and
the median severity of its impacts (:attr:`agents.potholes.Cluster.median_severity`).
A logistic regression of the label on ``ln(vehicles)`` and ``ln(severity)`` is fitted on
all seeds (the coefficients to put in :data:`agents.potholes.CONFIDENCE_LOGIT`) and, to
judge it, leave-one-seed-out: each seed scored by the fit on the others. Printed beside it:
the confidence the code gives now (``current``), a constant (the pooled share of real
alerts, known only afterwards) and the agreement score used before
(``(1 - 0.5 ** (vehicles - 1)) * down-first share``). Figures: Brier score (mean squared
difference between confidence and label, 0 best) and the calibration error over the bins
of ``accuracy_roughness.CONFIDENCE_BINS``. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import accuracy_roughness as bench  # noqa: E402
import pothole_replay as replay  # noqa: E402

import agents.potholes as potholes  # noqa: E402
import pipeline.stage2 as stage2  # noqa: E402


def alert_evidence(rec: dict) -> list[dict]:
    """Stage 2 replayed on one recording: per final alert, its confidence, label and the
    evidence of its last confirmation (vehicles, median severity, down-first share)."""
    last: dict = {}
    evidence: dict = {}
    confirm, upsert = stage2.confirm, stage2._upsert_alert

    def confirm_hook(clusters, **kw):
        (c,) = clusters
        last.update(n_vehicles=c.n_vehicles, severity=c.median_severity, down=c.down_fraction)
        return confirm(clusters, **kw)

    def upsert_hook(st, sid, position, *a, **kw):
        out = upsert(st, sid, position, *a, **kw)
        # the alert this confirmation created or updated: the nearest of its segment
        key = min(st.alerts, key=lambda k: abs(st.alerts[k]["position_m"] - round(position, 2)))
        evidence[(sid, key)] = dict(last)
        return out

    stage2.confirm, stage2._upsert_alert = confirm_hook, upsert_hook
    try:
        alerts = replay.offline.confirm_potholes(replay._current(rec["impacts"]), replay._net(), rec["passes"],
                                                 params=stage2.Stage2Params())  # fmt: skip
    finally:
        stage2.confirm, stage2._upsert_alert = confirm, upsert
    tr = rec["truth"]
    ph = bench._evaluate_network_potholes(tr["f"], alerts, tr["n_passes"], tr["min_passes"], tr["iso_class"],
                                          replay._net(), truth_passes=tr["truth_passes"])  # fmt: skip
    # confidence_real follows the alerts in the order the bench matched them
    ordered = sorted(alerts, key=lambda a: -a.confidence)
    return [dict(evidence[(a.segment_id, a.alert_id)], confidence=a.confidence, real=real)
            for a, (_, real) in zip(ordered, ph["confidence_real"], strict=True)]  # fmt: skip


def design(rows: list[dict]) -> np.ndarray:
    """Columns 1 and :func:`agents.potholes.confidence_features` (ln vehicles, ln severity)."""
    feats = [potholes.confidence_features(r["n_vehicles"], r["severity"]) for r in rows]
    return np.column_stack([np.ones(len(rows)), np.asarray(feats, float).reshape(-1, 2)])


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """Maximum-likelihood logistic coefficients, with a small ridge on the slopes."""

    def nll(b: np.ndarray) -> float:
        z = x @ b
        return float(np.sum(np.logaddexp(0, z) - y * z) + l2 * np.sum(b[1:] ** 2))

    def grad(b: np.ndarray) -> np.ndarray:
        p = 0.5 * (1 + np.tanh(0.5 * (x @ b)))
        return x.T @ (p - y) + 2 * l2 * np.r_[0.0, b[1:]]

    return minimize(nll, np.zeros(x.shape[1]), jac=grad, method="BFGS").x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="recordings of bench/pothole_replay.py record")
    ap.add_argument("--seeds", required=True, help="comma-separated seeds recorded in DIR")
    args = ap.parse_args(argv)
    rows, seed_of = [], []
    for seed in [int(s) for s in args.seeds.split(",")]:
        with open(Path(args.dir) / f"seed{seed}.pkl", "rb") as fh:
            got = alert_evidence(pickle.load(fh))
        rows += got
        seed_of += [seed] * len(got)
        print(f"seed {seed}: {len(got)} alerts, {sum(not r['real'] for r in got)} not a hole", flush=True)
    seed_of = np.array(seed_of)
    x, y = design(rows), np.array([r["real"] for r in rows], float)
    coef = fit_logistic(x, y)
    loso = np.empty(y.size)
    for s in np.unique(seed_of):
        out = seed_of == s
        loso[out] = 0.5 * (1 + np.tanh(0.5 * (x[out] @ fit_logistic(x[~out], y[~out]))))
    scored = {
        "current": [r["confidence"] for r in rows],
        "refit, leave one seed out": loso.tolist(),
        "constant (share real)": [float(y.mean())] * y.size,
        "agreement score (before)": [(1 - 0.5 ** (r["n_vehicles"] - 1)) * r["down"] for r in rows],
    }
    cal = {k: bench._calibration(list(zip(v, y.astype(bool), strict=True))) for k, v in scored.items()}
    print(f"\n{len(rows)} alerts, {int((1 - y).sum())} not a hole; fitted CONFIDENCE_LOGIT = "
          f"({coef[0]:.2f}, {coef[1]:.2f}, {coef[2]:.2f}) (intercept, ln vehicles, ln severity); "
          f"in the code: {potholes.CONFIDENCE_LOGIT}")  # fmt: skip
    for k, c in cal.items():
        print(f"{k}: {bench._calibration_text(c)}")
    print(json.dumps({
        "seeds": [int(s) for s in np.unique(seed_of)], "n_alerts": len(rows), "n_not_holes": int((1 - y).sum()),
        "fitted_logit": [round(float(b), 2) for b in coef], "code_logit": list(potholes.CONFIDENCE_LOGIT),
        "current_brier": round(cal["current"]["brier"], 4), "current_ece": round(cal["current"]["ece"], 4),
        "loso_brier": round(cal["refit, leave one seed out"]["brier"], 4),
        "loso_ece": round(cal["refit, leave one seed out"]["ece"], 4),
        "constant_brier": round(cal["constant (share real)"]["brier"], 4),
        "agreement_brier": round(cal["agreement score (before)"]["brier"], 4),
        "agreement_ece": round(cal["agreement score (before)"]["ece"], 4),
    }))  # fmt: skip
    return 0 if all(math.isfinite(c["brier"]) for c in cal.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
