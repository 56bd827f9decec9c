"""agents.before_after: exposure, regression to the mean, size and power."""

from __future__ import annotations

import numpy as np
import pytest

from agents.before_after import before_after, before_after_sites, period_counts, period_variance, smooth_prior


class TestBeforeAfter:
    def test_halved(self):
        r = before_after(120, 30.0, 60, 30.0)
        assert r.changed and r.direction == "decrease"
        assert r.ratio_lo < 0.5 < r.ratio_hi
        assert r.index_of_effectiveness == pytest.approx(0.5, abs=0.02)

    def test_exposure_accounted(self):
        # half the events after, but half the traffic too: no change
        r = before_after(120, 30.0, 60, 15.0)
        assert not r.changed and r.rate_ratio == pytest.approx(1.0, abs=0.1)

    def test_regression_to_the_mean(self):
        # a place picked for its bad before-period (16 events where similar places have ~4)
        naive = before_after(16, 1.0, 4, 1.0)
        eb = before_after(16, 1.0, 4, 1.0, prior_alpha=8.0, prior_beta=2.0)  # group mean 4 / unit
        assert naive.changed and not eb.changed
        assert eb.expected_after < 16

    def test_size_and_power(self):
        rng = np.random.default_rng(1)
        null = [before_after(rng.poisson(80), 1.0, rng.poisson(80), 1.0).changed for _ in range(400)]
        alt = [before_after(rng.poisson(80), 1.0, rng.poisson(40), 1.0).changed for _ in range(200)]
        assert np.mean(null) <= 0.07
        assert np.mean(alt) >= 0.9

    def test_comparison_trend(self):
        # everything fell by half (comparison group): no effect of the works
        r = before_after(100, 10.0, 50, 10.0, comparison=(1000, 100.0, 500, 100.0))
        assert not r.changed

    def test_a_small_comparison_group_is_not_taken_at_its_word(self):
        # 20 then 10 events in the comparison group: a "trend" of 0.5 known to +-40 %;
        # ignoring that uncertainty would call an unchanged place's 100 -> 100 an increase
        r = before_after(100, 1.0, 100, 1.0, comparison=(20, 1.0, 10, 1.0))
        assert r.expected_after == pytest.approx(50.0, rel=0.1) and not r.changed
        big = before_after(100, 1.0, 100, 1.0, comparison=(20000, 1.0, 10000, 1.0))
        assert big.changed and big.direction == "increase"
        with pytest.raises(ValueError, match="both periods"):
            before_after(100, 1.0, 100, 1.0, comparison=(20, 1.0, 0, 1.0))

    def test_zero_counts(self):
        r = before_after(0, 1.0, 0, 1.0)
        assert not r.changed and np.isfinite(r.ratio_hi)

    def test_exceptions(self):
        with pytest.raises(ValueError, match="counts"):
            before_after(-1, 1.0, 0, 1.0)
        with pytest.raises(ValueError, match="exposures"):
            before_after(1, 0.0, 0, 1.0)
        with pytest.raises(ValueError, match="alpha"):
            before_after(1, 1.0, 0, 1.0, alpha=0)


class TestDiscretePrior:
    """The nonparametric prior (agents.hotspots.multiplier_prior): a hotspot is not shrunk
    like an ordinary place with a bad spell."""

    rates = np.array([1.0, 10.0])  # ordinary places and hotspots, events per unit exposure
    weights = np.array([0.97, 0.03])

    def test_hotspot_is_not_shrunk(self):
        # 30 events where ordinary places have 1 is a hotspot: 30 again after is no change;
        # a shape-4 Gamma prior of mean 1 (CV 0.5) predicts ~7 and claims an increase
        r = before_after(30, 3.0, 30, 3.0, prior_rates=self.rates, prior_weights=self.weights)
        assert not r.changed and r.expected_after == pytest.approx(30.0, rel=0.05)
        g = before_after(30, 3.0, 30, 3.0, prior_alpha=4.0, prior_beta=4.0)
        assert g.changed and g.direction == "increase"

    def test_regression_to_the_mean(self):
        # 4 events where 1 was expected: probably an ordinary place; 1 after is no change
        r = before_after(4, 1.0, 1, 1.0, prior_rates=self.rates, prior_weights=self.weights)
        naive = before_after(40, 10.0, 10, 10.0)
        assert not r.changed and r.expected_after < 2.0 and naive.changed

    def test_size_on_places_drawn_from_the_prior(self):
        """Sites drawn from the prior, no change: claims at most at the nominal level."""
        rng = np.random.default_rng(3)
        lam = rng.choice(self.rates, 600, p=self.weights)
        x = rng.uniform(1.0, 4.0, 600)
        claims = [before_after(rng.poisson(l * xx), xx, rng.poisson(l * xx), xx, prior_rates=self.rates,
                               prior_weights=self.weights).changed for l, xx in zip(lam, x)]  # fmt: skip
        assert np.mean(claims) <= 0.05

    def test_sites_exact_total(self):
        r = before_after_sites(np.array([30, 25]), np.array([3.0, 3.0]), np.array([15, 12]), np.array([3.0, 3.0]),
                               prior_rates=np.tile(self.rates, (2, 1)), prior_weights=self.weights)  # fmt: skip
        assert r.changed and r.direction == "decrease" and r.ratio_lo < 0.5 < r.ratio_hi
        one = before_after_sites(np.array([30]), np.array([3.0]), np.array([30]), np.array([3.0]),
                                 prior_rates=self.rates[None, :], prior_weights=self.weights)  # fmt: skip
        assert one.p_value == pytest.approx(before_after(30, 3.0, 30, 3.0, prior_rates=self.rates, prior_weights=self.weights).p_value, abs=1e-6)

    def test_bad_prior(self):
        with pytest.raises(ValueError, match="prior_rates"):
            before_after(1, 1.0, 1, 1.0, prior_rates=np.array([1.0, 2.0]), prior_weights=np.array([1.0]))


class TestPriorSmoothing:
    """A maximum-likelihood prior is a few atoms; a place between them must not be read as
    the nearest atom (agents.before_after.smooth_prior)."""

    grid = np.geomspace(0.05, 100.0, 60)

    def atoms(self) -> np.ndarray:
        w = np.zeros(self.grid.size)
        w[np.argmin(np.abs(self.grid - 1.0))] = 0.95
        w[np.argmin(np.abs(self.grid - 10.0))] = 0.05
        return w

    def test_mass_kept_and_spread(self):
        w = self.atoms()
        s = smooth_prior(self.grid, w, 0.2)
        assert s.sum() == pytest.approx(1.0) and np.count_nonzero(s > 1e-6) > 2
        assert np.array_equal(smooth_prior(self.grid, w, 0.0), w)
        # mean log rate is kept (symmetric kernel, away from the grid's ends)
        assert s @ np.log(self.grid) == pytest.approx(w @ np.log(self.grid), abs=1e-6)

    def test_place_between_atoms_is_not_snapped(self):
        # rate 14 over 10 units: 140 events before and after, no change; the bare atoms
        # (1 and ~9.8) predict ~98 and claim an increase
        w = self.atoms()
        bare = before_after(140, 10.0, 140, 10.0, prior_rates=self.grid, prior_weights=w, prior_bandwidth=0.0)
        smooth = before_after(140, 10.0, 140, 10.0, prior_rates=self.grid, prior_weights=w)
        assert bare.changed and bare.direction == "increase"
        assert not smooth.changed and smooth.expected_after > 120.0

    def test_bad_bandwidth(self):
        with pytest.raises(ValueError, match="prior_bandwidth"):
            before_after(1, 1.0, 1, 1.0, prior_rates=self.grid, prior_weights=self.atoms(), prior_bandwidth=-0.1)


class TestBeforeAfterSites:
    def test_one_site_equals_before_after(self):
        a = before_after_sites(np.array([40]), np.array([10.0]), np.array([20]), np.array([10.0]), prior_alpha=2.0, prior_beta=1.0)
        b = before_after(40, 10.0, 20, 10.0, prior_alpha=2.0, prior_beta=1.0)
        assert a.p_value == pytest.approx(b.p_value) and a.rate_ratio == pytest.approx(b.rate_ratio)

    def test_programme(self):
        r = before_after_sites(np.array([40, 50, 30]), np.full(3, 10.0), np.array([20, 26, 14]), np.full(3, 10.0))
        assert r.changed and r.events_before == 120


class TestPeriodCounts:
    def test_basic(self):
        eb, xb, ea, xa = period_counts(
            np.array([1.0, 2.0, 5.0, 6.0]), np.array([True, False, True, True]),
            np.array([0.5, 1.5, 5.5]), np.array([1.0, 2.0, 4.0]), 4.0,
        )  # fmt: skip
        assert (eb, xb, ea, xa) == (1, 3.0, 2, 4.0)


class TestPeriodVariance:
    """A place's own variation between periods: measured on comparison places, then the
    test keeps its level where a Poisson test does not."""

    @staticmethod
    def places(rng, n, tau2, mean=150.0):
        lam = rng.gamma(4.0, mean / 4.0, n)  # places differ; the estimate must not care
        xb, xa = rng.uniform(0.5, 2.0, n), rng.uniform(0.5, 2.0, n)
        eps = rng.gamma(1.0 / tau2, tau2, n) if tau2 > 0 else np.ones(n)
        return rng.poisson(lam * xb), xb, rng.poisson(lam * eps * xa), xa

    def test_recovers_the_variance_and_the_trend(self):
        rng = np.random.default_rng(5)
        eb, xb, ea, xa = self.places(rng, 3000, 0.04)
        pv = period_variance(eb, xb, ea, xa)
        assert pv.variance == pytest.approx(0.04, abs=0.008) and pv.trend == pytest.approx(1.0, abs=0.02)
        assert pv.dispersion > 3  # 150 events a place: a 20 % spread is far beyond Poisson
        eb, xb, ea, xa = self.places(rng, 3000, 0.0)
        pv0 = period_variance(eb, xb, 0.8 * ea + 0 * ea, xa)  # a general fall of 20 %, no spread
        assert pv0.trend == pytest.approx(0.8, abs=0.02)
        pvp = period_variance(eb, xb, ea, xa)
        assert pvp.variance < 0.002 and pvp.dispersion == pytest.approx(1.0, abs=0.1)

    def test_keeps_the_level_where_poisson_does_not(self):
        rng = np.random.default_rng(6)
        eb, xb, ea, xa = self.places(rng, 1200, 0.04)
        tau2 = period_variance(eb[:600], xb[:600], ea[:600], xa[:600]).variance  # comparison places
        test = range(600, 1200)
        poisson = np.mean([before_after(eb[i], xb[i], ea[i], xa[i]).changed for i in test])
        with_var = np.mean([before_after(eb[i], xb[i], ea[i], xa[i], period_variance=tau2).changed for i in test])
        assert poisson > 0.2 and with_var <= 0.07
        # and still sees a halved rate at a busy place
        assert before_after(300, 1.0, 150, 1.0, period_variance=tau2).changed

    def test_discrete_prior_and_sites(self):
        rates, w = np.array([50.0, 500.0]), np.array([0.9, 0.1])
        plain = before_after(400, 1.0, 330, 1.0, prior_rates=rates, prior_weights=w)
        wide = before_after(400, 1.0, 330, 1.0, prior_rates=rates, prior_weights=w, period_variance=0.04)
        assert plain.changed and not wide.changed
        assert wide.ratio_hi - wide.ratio_lo > plain.ratio_hi - plain.ratio_lo
        s0 = before_after_sites(np.array([400, 380]), np.ones(2), np.array([330, 320]), np.ones(2),
                                prior_rates=np.tile(rates, (2, 1)), prior_weights=w)  # fmt: skip
        s1 = before_after_sites(np.array([400, 380]), np.ones(2), np.array([330, 320]), np.ones(2),
                                prior_rates=np.tile(rates, (2, 1)), prior_weights=w, period_variance=0.04)  # fmt: skip
        assert s1.p_value > s0.p_value

    def test_needs_places(self):
        with pytest.raises(ValueError, match="at least 3 places"):
            period_variance(np.array([5, 5]), np.ones(2), np.array([5, 5]), np.ones(2))
        with pytest.raises(ValueError, match="period_variance"):
            before_after(10, 1.0, 10, 1.0, period_variance=-0.1)

    def test_programme_with_a_comparison_group(self):
        rates, w = np.array([50.0, 400.0]), np.array([0.9, 0.1])
        kw = dict(prior_rates=np.tile(rates, (3, 1)), prior_weights=w)
        eb, x, ea = np.array([400, 380, 420]), np.ones(3), np.array([300, 290, 310])
        plain = before_after_sites(eb, x, ea, x, **kw)
        assert plain.changed and plain.direction == "decrease"
        # everything fell by a quarter: the works did nothing
        same = before_after_sites(eb, x, ea, x, comparison=(40000, 10.0, 30000, 10.0), **kw)
        assert not same.changed and same.expected_after == pytest.approx(0.75 * plain.expected_after, rel=0.01)
        # a small comparison group: its trend is common to the three sites, so the
        # programme's total is no surer than the trend (wider than three independent ones)
        small = before_after_sites(eb, x, ea, x, comparison=(400, 10.0, 300, 10.0), **kw)
        indep = before_after_sites(eb, x, ea, x, period_variance=1 / 400 + 1 / 300,
                                   comparison=(40000, 10.0, 30000, 10.0), **kw)  # fmt: skip
        assert small.p_value > indep.p_value
        gam = before_after_sites(eb, x, ea, x, prior_alpha=2.0, prior_beta=0.01, comparison=(400, 10.0, 300, 10.0))
        assert not gam.changed and gam.expected_after == pytest.approx(0.75 * 1200, rel=0.02)
