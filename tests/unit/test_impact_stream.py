"""agents.potholes.impact_features: the streaming impact detector (chunked == one call)."""

from __future__ import annotations

import numpy as np
import pytest

import agents.potholes as potholes
from agents.potholes import ImpactState, _block_sigma, impact_features
from simulator.profiles import ISO_GD0_M3, Feature, segment_truth
from simulator.quarter_car import draw_vehicle, drive

FS = 100.0


@pytest.fixture(scope="module")
def road():
    rng = np.random.default_rng(0)
    veh = draw_vehicle("suv", rng)
    feats = [Feature("pothole", 100.0, 0.6, -0.06), Feature("pothole", 300.0, 1.0, -0.04),
             Feature("rail_crossing", 500.0, 1.435, 0.02)]  # fmt: skip
    truth = segment_truth("s", 600.0, ISO_GD0_M3["B"], seed=3, features=feats)
    xs = np.arange(-50.0, 610.0, 1.0)
    _, pos, sp, acc = drive(veh, truth.x_m, truth.z_m, xs, np.full(xs.size, 50.0), FS, rng)
    seg = (pos > 400).astype(np.int64)
    return acc, sp, pos, seg


def _key(imps):
    return [(i.segment, round(i.offset_m, 6), round(i.peak_mps2, 9), i.polarity, i.n_peaks, round(i.slowdown, 9))
            for i in imps]  # fmt: skip


class TestImpactFeatures:
    def test_empty(self):
        imps, z = impact_features(np.zeros(0), np.zeros(0), np.zeros(0), FS)
        assert imps == [] and isinstance(z, ImpactState)

    def test_quiet(self):
        imps, _ = impact_features(np.full(1000, 9.81), 50.0, 0.0, FS, final=True)
        assert imps == []

    def test_finds_potholes_placed(self, road):
        acc, sp, pos, seg = road
        imps, _ = impact_features(acc, sp, pos, FS, segment=seg, final=True)
        holes = [i for i in imps if i.pothole_like]
        for where in (100.0, 300.0):
            assert any(abs(i.offset_m - where) < 3.0 and i.segment == 0 for i in holes)
        assert all(i.fs_hz == FS and np.isfinite(i.t_s) and 0 <= i.kind_score <= 1 for i in imps)

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_chunked_equals_one_call(self, road, seed):
        acc, sp, pos, seg = road
        whole, _ = impact_features(acc, sp, pos, FS, segment=seg, final=True)
        rng = np.random.default_rng(seed)
        cuts = np.sort(rng.choice(np.arange(1, acc.size), 40, replace=False))
        z, got = None, []
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, acc.size]):
            imps, z = impact_features(acc[a:b], sp[a:b], pos[a:b], FS, segment=seg[a:b], zi=z, final=b == acc.size)
            z = ImpactState.from_dict(z.to_dict())  # through the stored form
            got += imps
        assert _key(got) == _key(whole) and len(whole) >= 2

    def test_state_small(self, road):
        acc, sp, pos, seg = road
        _, z = impact_features(acc[:3000], sp[:3000], pos[:3000], FS, segment=seg[:3000])
        import orjson

        # the look-ahead keeps ~1.25 s of samples (SCALE_AHEAD_S + the open block) in the tail
        assert len(orjson.dumps(z.to_dict())) < 16_000

    def test_gap_restarts(self, road):
        acc, sp, pos, _ = road
        t = np.arange(acc.size) / FS
        _, z = impact_features(acc[:500], sp[:500], pos[:500], FS, t_s=t[:500])
        imps, z2 = impact_features(acc[500:], sp[500:], pos[500:], FS, t_s=t[500:] + 60.0, zi=z)
        assert z2.n_seen == acc.size and np.isnan(z2.tail["sig"][:1]).all() is not None

    def test_errors(self):
        with pytest.raises(ValueError, match="fs"):
            impact_features(np.zeros(10), 50.0, 0.0, 1.0)
        _, z = impact_features(np.zeros(10), 50.0, 0.0, FS)
        with pytest.raises(ValueError, match="zi was built"):
            impact_features(np.zeros(10), 50.0, 0.0, 50.0, zi=z)
        with pytest.raises(ValueError, match="segment shape"):
            impact_features(np.zeros(10), 50.0, 0.0, FS, segment=np.zeros(3))
        with pytest.raises(TypeError):
            impact_features(np.array(["a"] * 10), 50.0, 0.0, FS)


def _smooth_then_rough(shock_at: int | None = None) -> np.ndarray:
    """20 s of a smooth road then 10 s of a rough one (white noise, m/s^2), gravity added;
    optionally a down-then-up shock (a pothole) at sample ``shock_at``."""
    rng = np.random.default_rng(0)
    a = np.concatenate([0.05 * rng.standard_normal(2000), 1.0 * rng.standard_normal(1000)])
    if shock_at is not None:
        a[shock_at : shock_at + 3] += [-8.0, 0.0, 16.0]
    return a + 9.81


class TestLookAheadScale:
    def test_rougher_stretch_is_not_an_impact(self, monkeypatch):
        a = _smooth_then_rough()
        imps, _ = impact_features(a, 50.0, 0.0, FS, final=True)
        assert imps == []
        # causal only, the first shocks of the rough stretch stood out against the smooth road
        monkeypatch.setattr(potholes, "SCALE_AHEAD_S", 0.0)
        causal, _ = impact_features(a, 50.0, 0.0, FS, final=True)
        assert len(causal) >= 1 and all(20.0 <= i.t_s < 21.5 for i in causal)

    def test_shock_in_rough_stretch_still_found(self):
        imps, _ = impact_features(_smooth_then_rough(2500), 50.0, 0.0, FS, final=True)
        assert [round(i.t_s, 1) for i in imps] == [25.0] and imps[0].polarity == -1

    @pytest.mark.parametrize("seed", [0, 1])
    def test_chunked_equals_one_call_at_transition(self, seed):
        a = _smooth_then_rough(2500)
        whole, _ = impact_features(a, 50.0, 0.0, FS, final=True)
        rng = np.random.default_rng(seed)
        cuts = np.sort(rng.choice(np.arange(1, a.size), 60, replace=False))
        z, got = None, []
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, a.size]):
            imps, z = impact_features(a[lo:hi], 50.0, lo * 50.0 / 3.6 / FS, FS, zi=z, final=hi == a.size)
            got += imps
        assert _key(got) == _key(whole)


class TestBlockSigma:
    def test_past_then_smallest_later_block(self):
        meds = np.array([1.0, 1.0, 1.0, 1.0, 3.0, 2.0, 5.0])  # blocks 10..16
        sig, waiting = _block_sigma(np.array([14, 13]), meds, 10, 4, 2, False)
        # block 14: past blocks 10-13 (median 1), later blocks 15-16 (smallest 2)
        assert sig[0] == pytest.approx(1.4826 * 2.0) and not waiting.any()
        # block 13: past 9-12 incomplete (no history): never decided, not waiting
        assert np.isnan(sig[1])

    def test_waits_for_later_blocks_unless_final(self):
        meds = np.ones(6)  # blocks 0..5
        sig, waiting = _block_sigma(np.array([5, 5]), meds, 0, 4, 2, False)
        assert waiting.all() and np.isnan(sig).all()
        sig, waiting = _block_sigma(np.array([5]), meds, 0, 4, 2, True)
        assert not waiting.any() and sig[0] == pytest.approx(1.4826)

    def test_calm_road_keeps_causal_scale(self):
        meds = np.array([2.0] * 8 + [0.5, 0.5])  # the road turns smoother: the past decides
        sig, _ = _block_sigma(np.array([8]), meds, 0, 8, 1, False)
        assert sig[0] == pytest.approx(1.4826 * 2.0)
