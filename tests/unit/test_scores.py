"""agents.scores: fleet calibration (the job's computation) and calibrated segment scores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from agents.scores import Calibration, calibrate, segment_scores, vehicle_segment_means
from schemas.records import SegmentPass

T0 = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)


def fleet(n_veh: int = 8, n_seg: int = 12, seed: int = 0, noise: float = 0.05):
    """Per-(vehicle, segment) means: true roughness x vehicle gain x noise."""
    rng = np.random.default_rng(seed)
    true_r = {f"s{j}": float(x) for j, x in enumerate(rng.uniform(1.0, 8.0, n_seg))}
    gain = {f"v{i}": float(x) for i, x in enumerate(rng.uniform(0.8, 1.5, n_veh))}
    e, v, s = [], [], []
    for vi in gain:
        for sj in true_r:
            if rng.random() < 0.8:
                e.append(true_r[sj] * gain[vi] * np.exp(noise * rng.standard_normal()))
                v.append(vi)
                s.append(sj)
    return np.array(e), v, s, true_r, gain


def test_gain_ratios_are_recovered_and_median_anchor_is_one():
    e, v, s, _, gain = fleet()
    cal = calibrate(e, v, s)
    assert cal.anchor == "fleet_median" and cal.n_references == 0
    assert set(cal.gains) == set(gain)
    assert np.exp(np.median(np.log(list(cal.gains.values())))) == pytest.approx(1.0)
    assert cal.default_gain == pytest.approx(1.0)
    med_true = np.median(list(gain.values()))
    for k, g in cal.gains.items():
        assert g == pytest.approx(gain[k] / med_true, rel=0.05)


def test_references_set_the_absolute_scale_only_when_enough():
    e, v, s, true_r, gain = fleet()
    refs = {k: true_r[k] for k in ("s0", "s1", "s2")}
    cal = calibrate(e, v, s, reference_iri=refs)
    assert cal.anchor == "reference" and cal.n_references == 3
    for k, g in cal.gains.items():
        assert g == pytest.approx(gain[k], rel=0.06)  # absolute gains now
    assert cal.default_gain == pytest.approx(np.exp(np.median(np.log(list(cal.gains.values())))))
    # two references are not enough (and unknown segments do not count): median anchor
    few = calibrate(e, v, s, reference_iri={"s0": true_r["s0"], "s1": true_r["s1"], "nowhere": 3.0})
    assert few.anchor == "fleet_median"


def test_vehicles_sharing_too_few_segments_use_the_default_gain():
    e, v, s, _, _ = fleet()
    e = np.append(e, [9.0, 2.0])
    v = [*v, "newcomer", "newcomer"]
    s = [*s, "s0", "s1"]
    cal = calibrate(e, v, s)
    assert "newcomer" not in cal.gains and cal.n_segments["newcomer"] == 2
    assert cal.gain_of("newcomer") == cal.default_gain
    assert calibrate(e, v, s, min_shared=2).gains.get("newcomer") is not None


def test_empty_and_nan_input():
    assert calibrate(np.zeros(0), [], []).gains == {}
    cal = calibrate(np.array([np.nan, -1.0]), ["a", "b"], ["s", "s"])
    assert cal.gains == {} and cal.default_gain == 1.0


def _pass(vehicle: str, seg: str, iri: float | None, k: int, confidence: float = 1.0) -> SegmentPass:
    t = T0 + timedelta(minutes=k)
    return SegmentPass(
        vehicle=vehicle * 4, segment_id=seg, entry_time=t, exit_time=t + timedelta(seconds=10),
        entry_offset_m=0.0, exit_offset_m=100.0, covered_m=100.0, mean_speed_kmh=40.0, n_samples=1000,
        fs_hz=100.0, iri_m_per_km=iri, roughness_rms_mps2=0.3, max_vertical_mps2=1.0, n_harsh_events=0,
        confidence=confidence,
    )  # fmt: skip


def test_segment_scores_divide_each_vehicle_mean_by_its_gain():
    passes = [_pass("aaaa", "s", 2.0, 0), _pass("aaaa", "s", 4.0, 1), _pass("bbbb", "s", 6.0, 2),
              _pass("cccc", "s", 4.375, 3), _pass("cccc", "t", None, 4)]  # fmt: skip
    raw = {x.segment_id: x for x in segment_scores(passes)}
    assert raw["s"].iri_m_per_km == pytest.approx(4.375)  # median of 3, 6, 4.375
    cal = Calibration(gains={"aaaa" * 4: 0.5, "bbbb" * 4: 2.0}, default_gain=1.25)
    got = {x.segment_id: x for x in segment_scores(passes, (), cal)}
    # per-vehicle means 3/0.5 = 6, 6/2 = 3, 4.375/1.25 = 3.5 -> median 3.5, IQR 3.25..4.75
    assert got["s"].iri_m_per_km == pytest.approx(3.5)
    assert (got["s"].iri_p25, got["s"].iri_p75) == (pytest.approx(3.25), pytest.approx(4.75))
    assert got["s"].level == "fair" and raw["s"].level == "poor"
    assert got["t"].iri_m_per_km is None and got["t"].n_passes == 1


def test_vehicle_segment_means_one_value_per_pair():
    passes = [_pass("aaaa", "s", 2.0, 0), _pass("aaaa", "s", 4.0, 1), _pass("aaaa", "t", None, 2),
              _pass("bbbb", "s", 6.0, 3)]  # fmt: skip
    e, v, s = vehicle_segment_means(passes)
    assert e.tolist() == [3.0, 6.0] and v == ["aaaa" * 4, "bbbb" * 4] and s == ["s", "s"]


def test_reference_csv(tmp_path):
    from datetime import date

    from pipeline.calibration import load_reference_csv

    f = tmp_path / "survey.csv"
    f.write_text("segment_id,iri_m_per_km,surveyed_on,source\nabc,2.5,2024-05-01,laser\ndef,3.1,,\n")
    assert load_reference_csv(f) == [("abc", 2.5, date(2024, 5, 1), "laser"), ("def", 3.1, None, "profilometer")]
    f.write_text("segment_id,iri_m_per_km\nabc,0\n")
    with pytest.raises(ValueError, match="abc"):
        load_reference_csv(f)


def test_segment_confidence_follows_its_passes_and_its_vehicles():
    """Mean confidence of the passes with an IRI x (1 - exp(-vehicles / 2)), as sql/010."""
    full = [_pass(v, "s", 3.0, k) for k, v in enumerate(["aaaa", "bbbb", "cccc", "dddd", "eeee"])]
    low_rate = [_pass(v, "s", 3.0, k, confidence=0.6) for k, v in enumerate(["aaaa", "bbbb", "cccc", "dddd", "eeee"])]
    one = [_pass("aaaa", "s", 3.0, 0), _pass("aaaa", "s", 3.0, 1)]
    no_iri = [_pass("aaaa", "s", None, 0, confidence=0.0), _pass("bbbb", "s", 3.0, 1)]
    (a,), (b,), (c,), (d,) = (segment_scores(x) for x in (full, low_rate, one, no_iri))
    assert a.confidence == pytest.approx(1 - np.exp(-2.5))
    assert b.confidence == pytest.approx(0.6 * a.confidence)  # a 10 Hz fleet: 0.6 per pass
    assert c.confidence == pytest.approx(1 - np.exp(-0.5))  # one vehicle, however many passes
    assert d.confidence == pytest.approx(1 - np.exp(-0.5))  # a pass without an IRI does not count
    assert segment_scores([_pass("aaaa", "t", None, 0)])[0].confidence is None
