"""agents.potholes: impacts per pass, clustering, confirmation."""

from __future__ import annotations

import numpy as np
import pytest

from agents.potholes import (
    K_SIGMA,
    Impact,
    cluster_impacts,
    confirm,
    detect_impacts,
    pothole_confidence,
)
from simulator.profiles import ISO_GD0_M3, Feature, segment_truth
from simulator.quarter_car import draw_vehicle, drive

FS = 100.0


def _imp(pos: float, polarity: int = -1, slowdown: float = 1.0) -> Impact:
    return Impact(pos, 3.0, polarity, slowdown, 2, 50.0, 10.0)


def _drive(features, kmh, seed=0, slow_at=()):
    rng = np.random.default_rng(seed)
    veh = draw_vehicle("suv", rng)
    truth = segment_truth("p", 200.0, ISO_GD0_M3["A"], seed=3, features=features)
    xs = np.arange(-50.0, 210.0, 1.0)
    vs = np.full(xs.size, kmh)
    for p in slow_at:
        vs = np.minimum(vs, 20.0 + 1.5 * np.abs(xs - p))
    _, pos, sp, acc = drive(veh, truth.x_m, truth.z_m, xs, vs, FS, rng)
    m = (pos >= 0) & (pos <= 200.0)
    return acc[m], sp[m], pos[m]


class TestDetectImpacts:
    def test_empty_and_quiet(self):
        assert detect_impacts(np.zeros(0), 50.0, FS) == []
        assert detect_impacts(np.full(1000, 9.81), 50.0, FS) == []

    def test_synthetic_down_up(self):
        a = np.full(500, 9.81)
        a[250:253] = [5.0, 9.81, 16.0]
        (imp,) = detect_impacts(a, 36.0, FS, 10.0)
        assert imp.polarity == -1 and imp.offset_m == pytest.approx(35.0, abs=0.5)
        assert imp.pothole_like

    def test_pothole_on_simulated_road(self):
        acc, sp, pos = _drive([Feature("pothole", 100.0, 0.6, -0.06)], 50.0)
        imps = detect_impacts(acc, sp, FS, pos)
        assert len(imps) >= 1
        best = max(imps, key=lambda i: i.peak_mps2)
        assert abs(best.offset_m - 100.0) < 3.0 and best.pothole_like

    def test_speed_bump_is_not_pothole_like(self):
        acc, sp, pos = _drive([Feature("speed_bump", 100.0, 3.5, 0.08)], 50.0, slow_at=[100.0])
        imps = detect_impacts(acc, sp, FS, pos)
        assert imps and not any(i.pothole_like for i in imps)

    def test_cushion_up_first(self):
        acc, sp, pos = _drive([Feature("speed_cushion", 100.0, 1.0, 0.06)], 50.0)
        imps = detect_impacts(acc, sp, FS, pos)
        assert imps and imps[0].polarity == 1

    def test_read_only(self):
        a = np.full(500, 9.81)
        a.setflags(write=False)
        assert detect_impacts(a, 50.0, FS) == []

    def test_exceptions(self):
        with pytest.raises(ValueError, match="fs"):
            detect_impacts(np.zeros(500), 50.0, 1.0)
        with pytest.raises(ValueError, match="speed_kmh shape"):
            detect_impacts(np.zeros(500), np.zeros(3), FS)
        with pytest.raises(ValueError, match="offset_m shape"):
            detect_impacts(np.zeros(500), 50.0, FS, np.zeros(3))
        with pytest.raises(TypeError, match="accel_vert_mps2"):
            detect_impacts(np.array(["x"] * 500), 50.0, FS)


class TestClusterImpacts:
    def test_empty(self):
        assert cluster_impacts([], [], []) == []

    def test_basic(self):
        imps = [_imp(10.0), _imp(12.0), _imp(14.0), _imp(40.0), _imp(11.0)]
        out = cluster_impacts(imps, ["s", "s", "s", "s", "t"], ["a", "b", "c", "a", "a"])
        assert [(c.segment_id, c.position_m, c.n_vehicles) for c in out] == [
            ("s", 12.0, 3),  # three vehicles within 5 m
            ("s", 40.0, 1),
            ("t", 11.0, 1),  # another segment
        ]

    def test_drop_pair_vehicles(self):
        # vehicle a: front and rear wheel down-first, 2.7 m and 0.2 s apart (counts);
        # b: second shock up-first (a rail's ridge); c: 2.7 m apart but a minute later
        # (two passes); d: 0.6 m apart (one wheel, two edges)
        def at(off, t, pol=-1):
            return Impact(off, 2.0, pol, 1.0, 2, 50.0, 8.0, t_s=t)

        imps = [at(10.0, 0.0), at(12.7, 0.2), at(10.2, 5.0), at(12.9, 5.2, +1), at(10.1, 9.0), at(12.8, 69.0),
                at(10.3, 80.0), at(10.9, 80.1)]
        (c,) = cluster_impacts(imps, ["s"] * 8, list("aabbccdd"))
        assert c.n_vehicles == 4 and c.drop_pair_vehicles == 1

    def test_exceptions(self):
        with pytest.raises(ValueError, match="equal lengths"):
            cluster_impacts([_imp(1.0)], ["s", "t"], ["a"])
        with pytest.raises(ValueError, match="gap_m"):
            cluster_impacts([], [], [], gap_m=0.0)


class TestConfirm:
    def test_empty(self):
        assert confirm([]) == []

    def test_needs_three_vehicles(self):
        c2 = cluster_impacts([_imp(10.0), _imp(11.0)], ["s"] * 2, ["a", "b"])
        assert confirm(c2) == []
        c3 = cluster_impacts([_imp(10.0), _imp(11.0), _imp(10.5)], ["s"] * 3, ["a", "b", "c"])
        (f,) = confirm(c3)
        assert f.kind == "pothole" and f.position_m == 10.5 and 0 < f.confidence <= 1

    def test_same_vehicle_counts_once(self):
        c = cluster_impacts([_imp(10.0)] * 5, ["s"] * 5, ["a"] * 5)
        assert confirm(c) == []

    def test_bump_never_pothole(self):
        imps = [_imp(50.0, polarity=1, slowdown=0.4) for _ in range(4)]
        (f,) = confirm(cluster_impacts(imps, ["s"] * 4, list("abcd")))
        assert f.kind == "bump"
        # down-first but everyone slowed down: still not a pothole
        imps = [_imp(50.0, polarity=-1, slowdown=0.5) for _ in range(4)]
        assert all(f.kind != "pothole" for f in confirm(cluster_impacts(imps, ["s"] * 4, list("abcd"))))

    def test_lower_confidence_at_10hz(self):
        c = cluster_impacts([_imp(10.0), _imp(11.0), _imp(10.5)], ["s"] * 3, ["a", "b", "c"])
        assert confirm(c, fs_hz=10.0)[0].confidence < confirm(c)[0].confidence

    def test_exceptions(self):
        with pytest.raises(ValueError, match="min_vehicles"):
            confirm([], min_vehicles=0)

    def test_pothole_confidence_is_the_calibrated_probability(self):
        c = cluster_impacts([_imp(10.0), _imp(11.0), _imp(10.5)], ["s"] * 3, ["a", "b", "c"])
        (f,) = confirm(c)
        assert f.confidence == round(pothole_confidence(3, c[0].median_severity), 3)


class TestPotholeConfidence:
    def test_grows_with_vehicles_and_severity(self):
        by_vehicles = [pothole_confidence(n, 5.0) for n in (3, 5, 10, 30)]
        by_severity = [pothole_confidence(3, s) for s in (4.5, 6.0, 9.0, 20.0)]
        assert np.all(np.diff(by_vehicles) > 0) and np.all(np.diff(by_severity) > 0)
        assert 0 < min(by_vehicles + by_severity) and max(by_vehicles + by_severity) < 1

    def test_unknown_or_low_severity_counts_as_the_threshold(self):
        at_threshold = pothole_confidence(4, K_SIGMA)
        assert pothole_confidence(4, float("nan")) == pothole_confidence(4, 1.0) == at_threshold
        assert pothole_confidence(4, float("inf")) == 1.0

    def test_lower_below_50_hz(self):
        assert pothole_confidence(5, 6.0, 10.0) == pytest.approx(0.6 * pothole_confidence(5, 6.0, 100.0))
        assert pothole_confidence(5, 6.0, 50.0) == pothole_confidence(5, 6.0, 100.0)

    def test_needs_a_vehicle(self):
        with pytest.raises(ValueError, match="n_vehicles"):
            pothole_confidence(0, 6.0)


class TestSpeedDip:
    """A cluster whose impacts are at a speed dip (slowed for the spot) is treated as slowed for."""

    @staticmethod
    def _cluster(polarities, *, peak=5.0, severity=9.0, dip=1.2):
        imps = [Impact(40.0 + 0.2 * k, peak, p, 1.0, 2, 30.0, severity, t_s=100.0 * k, double_hit_m=2.5,
                       speed_dip=dip) for k, p in enumerate(polarities)]  # fmt: skip
        (c,) = cluster_impacts(imps, ["s"] * len(imps), [f"v{k}" for k in range(len(imps))])
        return c

    def test_dip_fraction(self):
        assert self._cluster([-1, -1, 1]).dip_fraction == 1.0
        assert self._cluster([-1, -1, 1], dip=1.0).dip_fraction == 0.0
        assert np.isnan(self._cluster([-1, -1, 1], dip=float("nan")).dip_fraction)  # unknown

    def test_dipped_cluster_needs_the_slowed_down_first_share(self):
        kw = dict(signature="polarity", min_pothole_fraction=0.5, slowed_pothole_fraction=0.8)
        c = self._cluster([-1, -1, 1])  # 0.67 down-first, median slowdown 1.0
        assert confirm([c], **kw)[0].kind == "pothole"  # rule off
        assert confirm([c], dip_slowed_fraction=0.5, **kw)[0].kind == "bump"
        assert confirm([self._cluster([-1, -1, 1], dip=1.0)], dip_slowed_fraction=0.5, **kw)[0].kind == "pothole"
        unknown = self._cluster([-1, -1, 1], dip=float("nan"))
        assert confirm([unknown], dip_slowed_fraction=0.5, **kw)[0].kind == "pothole"
        assert confirm([self._cluster([-1, -1, -1])], dip_slowed_fraction=0.5, **kw)[0].kind == "pothole"

    def test_no_weak_exception_at_a_dip(self):
        kw = dict(signature="polarity", min_pothole_fraction=0.5, min_peak_mps2=3.0, weak_min_severity=5.5)
        weak = self._cluster([-1, -1, -1], peak=2.5, severity=8.0)  # all down-first, small peaks
        assert confirm([weak], **kw)[0].kind == "pothole"
        assert confirm([weak], dip_slowed_fraction=0.5, **kw) == []
        steady = self._cluster([-1, -1, -1], peak=2.5, severity=8.0, dip=1.0)
        assert confirm([steady], dip_slowed_fraction=0.5, **kw)[0].kind == "pothole"
