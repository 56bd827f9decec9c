"""simulator.profiles: ISO 8608 synthesis, features, segment truth, network assignment."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from simulator.profiles import (
    ISO_GD0_M3,
    Feature,
    assign_roughness,
    draw_features,
    feature_profile,
    iso8608_profile,
    iso_class_of,
    pothole_contrast,
    segment_truth,
)


class TestIso8608Profile:
    def test_psd_slope_and_level(self):
        rng = np.random.default_rng(0)
        dx = 0.05
        z = iso8608_profile(2000.0, ISO_GD0_M3["C"], rng, dx_m=dx)
        f, p = signal.welch(z, fs=1 / dx, nperseg=4096)
        band = (f > 0.05) & (f < 2.0)
        slope = np.polyfit(np.log(f[band]), np.log(p[band]), 1)[0]
        assert slope == pytest.approx(-2.0, abs=0.15)
        at_n0 = np.exp(np.interp(np.log(0.1), np.log(f[band]), np.log(p[band])))
        assert at_n0 == pytest.approx(ISO_GD0_M3["C"], rel=0.3)

    def test_deterministic(self):
        a = iso8608_profile(100.0, 1e-4, np.random.default_rng(1))
        b = iso8608_profile(100.0, 1e-4, np.random.default_rng(1))
        np.testing.assert_array_equal(a, b)

    def test_exceptions(self):
        with pytest.raises(ValueError, match="length_m"):
            iso8608_profile(0.0, 1e-4, np.random.default_rng(0))


class TestIsoClassOf:
    def test_classes(self):
        assert iso_class_of(16e-6) == "A"
        assert iso_class_of([16e-6, 64e-6, 256e-6, 1024e-6, 4096e-6]).tolist() == list("ABCDE")


class TestFeatures:
    def test_shapes(self):
        x = np.arange(0.0, 20.0, 0.01)
        feats = [Feature("pothole", 5.0, 0.5, -0.05), Feature("speed_bump", 12.0, 4.0, 0.08),
                 Feature("rail_crossing", 17.0, 1.435, 0.02)]
        defects, designed = feature_profile(x, feats)
        assert defects.min() == pytest.approx(-0.05) and defects[x < 4].max() == 0.0
        assert designed.max() == pytest.approx(0.08, abs=1e-3)
        assert np.all(defects[(x > 10)] == 0.0)

    def test_draw_ranges(self):
        rng = np.random.default_rng(0)
        feats = draw_features(1000.0, rng, pothole_rate_per_km=20, n_speed_bumps=2, n_rail_crossings=1)
        ph = [f for f in feats if f.kind == "pothole"]
        assert ph and all(0.02 <= -f.height_m <= 0.10 and 0.2 <= f.length_m <= 1.5 for f in ph)
        pos = np.array([f.position_m for f in feats])
        assert np.all(np.diff(pos) >= 25.0)


class TestSegmentTruth:
    def test_iri_scales_with_class(self):
        iris = [segment_truth("s", 300.0, ISO_GD0_M3[c], seed=1).iri_m_per_km for c in "ABC"]
        assert iris[0] < iris[1] < iris[2]
        assert iris[1] / iris[0] == pytest.approx(2.0, rel=0.01)  # IRI ~ sqrt(Gd)

    def test_designed_features_not_in_iri(self):
        base = segment_truth("s", 300.0, ISO_GD0_M3["B"], seed=1)
        bump = segment_truth("s", 300.0, ISO_GD0_M3["B"], seed=1, features=[Feature("speed_bump", 150.0, 3.5, 0.08)])
        hole = segment_truth("s", 300.0, ISO_GD0_M3["B"], seed=1, features=[Feature("pothole", 150.0, 0.8, -0.06)])
        assert bump.iri_m_per_km == base.iri_m_per_km
        assert hole.iri_m_per_km > base.iri_m_per_km
        assert bump.z_m.max() > base.z_m.max()


class TestAssignRoughness:
    def test_same_way_shares_class(self):
        hw = ["primary", "primary", "residential", "residential"]
        ways = [10, 10, 11, 12]
        gd0, stretches = assign_roughness(hw, ways, [100.0] * 4, seed=3)
        assert gd0.shape == (4,) and len(stretches) == 4
        assert iso_class_of(gd0[0]) == iso_class_of(gd0[1]) or abs(np.log(gd0[0] / gd0[1])) < 0.35
        assert np.all(gd0 > 0)

    def test_arterials_smoother(self):
        n = 400
        gd_p, _ = assign_roughness(["primary"] * n, np.arange(n), [100.0] * n, seed=1)
        gd_r, _ = assign_roughness(["residential"] * n, np.arange(n), [100.0] * n, seed=1)
        assert np.median(gd_p) < np.median(gd_r)


class TestPotholeContrast:
    """The ground truth's 'does this hole stand out of its road' (reported by the bench)."""

    def _truth(self, cls: str, hole: Feature, seed: int = 3):
        feats = [hole, Feature("speed_bump", 80.0, 3.5, 0.08)]
        return segment_truth("s", 120.0, ISO_GD0_M3[cls], seed=seed, features=feats, lead_m=0.0, tail_m=0.0)

    def test_a_rough_road_hides_the_same_hole(self):
        hole = Feature("pothole", 40.0, 1.0, -0.04)
        smooth, rough = (pothole_contrast(self._truth(c, hole)) for c in ("A", "E"))
        assert np.isnan(smooth[1]) and np.isnan(rough[1])  # designed features have none
        # A -> E is 256x the PSD level (4096 / 16), so 16x the unevenness at every scale
        assert smooth[0] / rough[0] == pytest.approx(16.0, rel=0.35)
        assert smooth[0] > 50 and rough[0] < 10

    def test_a_tyre_bridges_a_short_hole(self):
        long_, short = Feature("pothole", 40.0, 1.2, -0.06), Feature("pothole", 40.0, 0.2, -0.06)
        c_long, c_short = (pothole_contrast(self._truth("B", h))[0] for h in (long_, short))
        # long hole: the tyre reaches the bottom (6 cm); 0.2 m: the sagitta of a 0.33 m tyre
        sagitta = 0.33 - np.sqrt(0.33**2 - 0.1**2)
        assert c_short / c_long == pytest.approx(sagitta / 0.06, rel=1e-9)

    def test_the_hole_itself_is_not_counted_as_unevenness(self):
        shallow, deep = Feature("pothole", 40.0, 1.0, -0.02), Feature("pothole", 40.0, 1.0, -0.08)
        c_shallow, c_deep = (pothole_contrast(self._truth("C", h))[0] for h in (shallow, deep))
        assert c_deep / c_shallow == pytest.approx(4.0, rel=1e-9)
