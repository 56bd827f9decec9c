"""agents.iri: ASTM E1926 reference IRI against analytic cases."""

from __future__ import annotations

import numpy as np
import pytest

from agents.iri import golden_car_response, iri

DX = 0.05


def _x(length_m: float = 400.0) -> np.ndarray:
    return np.arange(0.0, length_m, DX)


def _sine_iri(amp_m: float, wavelength_m: float) -> float:
    n = 1.0 / wavelength_m
    return 1000 * (2 / np.pi) * 2 * np.pi * n * amp_m * float(golden_car_response(n, moving_average=True))


class TestIri:
    def test_flat_is_zero(self):
        assert iri(np.zeros_like(_x()), DX) == 0.0

    def test_constant_offset_is_zero(self):
        assert iri(np.full(_x().size, 3.2), DX) == pytest.approx(0.0, abs=1e-9)

    def test_linear_ramp_is_zero(self):
        # the 11 m slope initialisation puts the car in equilibrium on a grade
        assert iri(0.03 * _x() - 1.0, DX) == pytest.approx(0.0, abs=1e-6)

    @pytest.mark.parametrize("wavelength_m", [1.0, 2.0, 5.0, 10.0, 15.0, 30.0])
    def test_sinusoid_matches_frequency_response(self, wavelength_m):
        x = np.arange(0.0, 1000.0, DX)  # long: the initial transient is negligible
        got = iri(0.002 * np.sin(2 * np.pi * x / wavelength_m), DX)
        assert got == pytest.approx(_sine_iri(0.002, wavelength_m), rel=0.03)

    def test_linear_in_amplitude(self):
        rng = np.random.default_rng(0)
        z = np.cumsum(rng.standard_normal(_x().size)) * 1e-4
        assert iri(3.0 * z, DX) == pytest.approx(3.0 * iri(z, DX), rel=1e-9)

    def test_axis_and_batch(self):
        rng = np.random.default_rng(1)
        z = np.cumsum(rng.standard_normal((3, _x().size)), axis=1) * 1e-4
        batch = iri(z.T, DX, axis=0)
        assert batch.shape == (3,)
        np.testing.assert_allclose(batch, [iri(r, DX) for r in z])

    def test_other_spacing_agrees(self):
        x1 = np.arange(0.0, 500.0, 0.025)
        x2 = np.arange(0.0, 500.0, 0.1)
        f = lambda x: 0.003 * np.sin(2 * np.pi * x / 7.0) + 0.001 * np.sin(2 * np.pi * x / 2.3)  # noqa: E731
        assert iri(f(x1), 0.025) == pytest.approx(iri(f(x2), 0.1), rel=0.03)

    def test_read_only_input(self):
        z = np.sin(_x() / 3.0) * 1e-3
        z.setflags(write=False)
        assert iri(z, DX) > 0

    def test_nan_gives_nan(self):
        z = np.zeros(_x().size)
        z[100] = np.nan
        assert np.isnan(iri(z, DX))

    @pytest.mark.parametrize("dx", [0.0, -0.1, np.nan, 2.0])
    def test_bad_dx(self, dx):
        with pytest.raises(ValueError, match="dx_m"):
            iri(np.zeros(1000), dx)

    def test_too_short(self):
        with pytest.raises(ValueError, match="profile_m too short"):
            iri(np.zeros(100), DX)

    def test_empty(self):
        with pytest.raises(ValueError, match="profile_m too short"):
            iri(np.zeros(0), DX)

    def test_bad_dtype(self):
        with pytest.raises(TypeError, match="profile_m"):
            iri(np.array(["a"] * 1000), DX)


class TestGoldenCarResponse:
    def test_zero_at_dc(self):
        assert golden_car_response(0.0) == pytest.approx(0.0, abs=1e-12)

    def test_resonances(self):
        n = np.linspace(0.01, 2.0, 4000)
        g = golden_car_response(n)
        # body mode ~ 1.2 Hz at 22.2 m/s -> ~0.06 cycle/m; wheel hop ~ 10 Hz -> ~0.5 cycle/m
        peaks = n[1:-1][(g[1:-1] > g[:-2]) & (g[1:-1] > g[2:])]
        assert peaks.size == 2
        assert 0.04 < peaks[0] < 0.09 and 0.4 < peaks[1] < 0.7
        assert 1.5 < g.max() < 1.7

    def test_moving_average_attenuates(self):
        assert golden_car_response(2.0, moving_average=True) < golden_car_response(2.0)

    def test_negative_frequency(self):
        with pytest.raises(ValueError, match="freq_cycles_per_m"):
            golden_car_response(-1.0)


def test_short_section_factor():
    """The ASTM initialisation lowers a short section's expected IRI by ~0.82 m / L."""
    from agents.iri import SHORT_SECTION_LOSS_M, short_section_factor
    from simulator.profiles import iso8608_profile

    rng = np.random.default_rng(11)
    dx = 0.025
    sums = {20.0: [0.0, 0], 1000.0: [0.0, 0]}
    for _ in range(30):
        z = iso8608_profile(2000.0, 16e-6, rng, dx_m=dx)
        for length, acc in sums.items():
            n = int(length / dx)
            v = iri(np.stack([z[s : s + n + 1] for s in range(0, len(z) - n - 1, n + 1)]), dx)
            acc[0] += float(np.sum(v))
            acc[1] += np.size(v)
    ratio = (sums[20.0][0] / sums[20.0][1]) / (sums[1000.0][0] / sums[1000.0][1])
    want = short_section_factor(20.0) / short_section_factor(1000.0)
    assert ratio == pytest.approx(want, abs=0.01)
    assert short_section_factor(20.0) == pytest.approx(1 - SHORT_SECTION_LOSS_M / 20.0)
    assert short_section_factor(5.0) == short_section_factor(11.25)
