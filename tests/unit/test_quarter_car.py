"""simulator.quarter_car: vehicle population, dynamics, tyre envelope, IMU."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from simulator.quarter_car import (
    FAMILIES,
    GRAVITY_MPS2,
    HOLDOUT_FAMILIES,
    TRAIN_FAMILIES,
    _discrete_sos,
    draw_vehicle,
    drive,
    envelope_profile,
    imu_sample,
)


def _continuous_accel_gain(f, ms, mu, ks, cs, kt):
    s = 2j * np.pi * f
    n = cs * s + ks
    d = (mu * s**2 + n + kt) * (ms * s**2 + n) - n**2
    return np.abs(s**2 * n * kt / d)


class TestDrawVehicle:
    def test_families(self):
        assert set(TRAIN_FAMILIES).isdisjoint(HOLDOUT_FAMILIES)
        assert set(TRAIN_FAMILIES) | set(HOLDOUT_FAMILIES) <= set(FAMILIES)

    def test_spread_and_ranges(self):
        rng = np.random.default_rng(0)
        vs = [draw_vehicle("small_car", rng) for _ in range(50)]
        ms = np.array([v.ms_kg for v in vs])
        assert ms.std() / ms.mean() == pytest.approx(0.10, abs=0.04)
        assert all(abs(v.gain_error) <= 0.05 and 0.02 <= v.noise_mps2 <= 0.05 for v in vs)
        assert all(0.8 < v.body_hz < 2.5 and 8 < v.wheel_hop_hz < 20 for v in vs)

    def test_unknown(self):
        with pytest.raises(ValueError, match="unknown family"):
            draw_vehicle("tank", np.random.default_rng(0))


class TestDynamics:
    def test_discrete_matches_continuous(self):
        p = (300.0, 35.0, 25e3, 1800.0, 200e3)
        sos = _discrete_sos(*p, 1000.0)
        f = np.array([0.5, 1.3, 5.0, 12.0, 30.0])
        _, h = signal.sosfreqz(sos, worN=f, fs=1000.0)
        np.testing.assert_allclose(np.abs(h), _continuous_accel_gain(f, *p), rtol=0.01)

    def test_flat_road_gives_gravity_only(self):
        rng = np.random.default_rng(1)
        veh = draw_vehicle("suv", rng)
        x = np.arange(-60.0, 200.0, 0.025)
        _, pos, sp, acc = drive(veh, x, np.zeros_like(x), np.array([-50.0, 150.0]), np.array([50.0, 50.0]), 100.0, rng)
        assert np.mean(acc) == pytest.approx((1 + veh.gain_error) * GRAVITY_MPS2, abs=0.01)
        assert np.std(acc) == pytest.approx(veh.noise_mps2, rel=0.15)
        assert sp == pytest.approx(50.0)
        assert pos[-1] == pytest.approx(150.0, abs=0.2)

    def test_rates(self):
        rng = np.random.default_rng(2)
        veh = draw_vehicle("van", rng)
        x = np.arange(-60.0, 200.0, 0.025)
        z = 0.003 * np.sin(2 * np.pi * x / 7.0)
        for fs in (100.0, 50.0, 10.0):
            t, *_ = drive(veh, x, z, np.array([0.0, 100.0]), np.array([36.0, 36.0]), fs, rng)
            assert np.diff(t) == pytest.approx(1 / fs)
        with pytest.raises(ValueError, match="fs_out"):
            imu_sample(np.zeros(100), 1000.0, 300.0, rng)


class TestEnvelope:
    def test_bridges_short_hole(self):
        dx = 0.01
        x = np.arange(0.0, 5.0, dx)
        z = np.where(np.abs(x - 2.5) < 0.1, -0.08, 0.0)  # 20 cm wide, 8 cm deep
        env = envelope_profile(z, dx, 0.3, 0.01)
        assert -0.03 < env.min() < -0.01  # R - sqrt(R^2 - 0.1^2) = 1.7 cm
        wide = np.where(np.abs(x - 2.5) < 0.75, -0.05, 0.0)
        assert envelope_profile(wide, dx, 0.3, 0.01).min() == pytest.approx(-0.05)

    def test_smooth_profile_unchanged(self):
        dx = 0.025
        x = np.arange(0.0, 50.0, dx)
        z = 0.01 * np.sin(2 * np.pi * x / 10.0)
        np.testing.assert_allclose(envelope_profile(z, dx, 0.3, 0.025), z, atol=2e-4)
