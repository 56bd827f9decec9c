"""Before/after study of safety works: did the harsh-event rate change at a place?

A naive comparison of event counts before and after works is wrong twice: traffic changes
(so compare *rates* per exposure), and places are chosen for works *because* their recent
count was high, so their count would fall anyway (regression to the mean). This module
uses the empirical-Bayes before/after method of road-safety evaluation (Hauer 1997):

* the rate the place would have had after, without works, is estimated from its before
  period *shrunk towards the rate of similar places* (the Gamma(α, β) prior of
  :func:`agents.hotspots.rank_hotspots`, fitted on the before period): posterior
  ``λ_b ~ Gamma(α + E_b, β + X_b)``; an optional comparison group of untreated places
  scales it by the general trend;
* with no change, the after count is then negative binomial:
  ``E_a ~ NB(α + E_b, (β + X_b) / (β + X_b + g X_a))`` (Poisson with a Gamma rate), where
  ``g`` is the trend (its uncertainty counted as period variance, below). The test's two-sided p-value comes from that exact distribution
  (small counts are fine);
* the rate ratio after/before ``θ`` has a posterior that is a scaled F distribution
  (ratio of two Gamma posteriors; Jeffreys prior on the after rate); its median and
  equal-tailed interval are reported, with Hauer's index of effectiveness.

**Nonparametric prior** (``prior_rates``/``prior_weights``, recommended): the Gamma
prior has one shape for a whole group, so it shrinks a genuinely dangerous place (rate many
times its group's) as hard as an ordinary place that had a bad spell: at an untreated
hotspot the expected after count is then far too low and the test claims an *increase*
(on the development seeds: 7 of 42 untreated hotspots at α = 0.05). With the discrete
prior of :func:`agents.hotspots.multiplier_prior` (rates = multipliers × the group's reference rate,
fitted on all zones of the before period) the before count itself tells which part of the
prior the place belongs to: a hotspot's posterior sits on high multipliers, an ordinary
zone with a chance excess is still pulled back (regression to the mean), and the after
count without change is a mixture of Poissons (exact p-value). That is the
between-place overdispersion of the counts.

**Smoothing the prior** (``prior_bandwidth``): the nonparametric maximum-likelihood prior
is a few atoms (the Kiefer-Wolfowitz estimate is discrete whatever the truth), so the
posterior of a place with a long record snaps to the nearest atom, which may be 30 % from
its rate, and the predictive of its after count is then too narrow and off-centre. Each
atom is spread by a Gaussian kernel in log rate (``PRIOR_BANDWIDTH`` = 0.2, about ±20 %),
on the prior's own points. On the development seeds of the safety bench (101-104,
115-116: 120 no-change zones picked by their before record) the mean log predictive
probability of their after counts was -1.820 unsmoothed, -1.804 at 0.2, -1.809 at 0.3,
-1.834 at 0.5 (over all 4,339 zones: best at 0.2 too), and the claims fell from 7 to 5 of
120 at α = 0.05 (``docs/decisions.md``).

**A place's own variation over time** (``period_variance``): even with no works, a
place's rate is not the same in two periods. The drivers who pass differ (one aggressive
commuter's daily brakes are a cluster, not independent events), and so do weather and
events. With ~150 events a 20 % swing is "significant" for a Poisson test, which then
claims changes at untouched places far more often than ``alpha`` (8 % at α = 0.05 in the
safety bench). The model: the after rate is the before rate × the trend × ``ε``, with
``ε ~ Gamma(1/τ², τ²)`` (mean 1, variance ``τ² = period_variance``) independent per
place. :func:`period_variance` estimates ``τ²`` and the trend on untreated places of the
same two periods (the comparison group): conditional on its total, a place's after count
is binomial without ``ε`` and over-dispersed with it, so neither the places' own rates
nor a prior are needed. Under a discrete prior the after count is then a mixture of
negative binomials (exact p-value); under a Gamma prior the product rate is replaced by a
Gamma of the same mean and variance.

Exposure is whatever unit the prior uses (vehicle-km from the ranking); counts and
exposures are for the whole set of segments (or zone) under study.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import stats

#: Bandwidth of the Gaussian kernel smoothing a discrete prior, in natural log of the rate.
PRIOR_BANDWIDTH = 0.2

__all__ = ["PRIOR_BANDWIDTH", "BeforeAfter", "PeriodVariance", "before_after", "before_after_sites", "period_counts",
           "period_variance", "smooth_prior"]


@dataclass(frozen=True)
class BeforeAfter:
    """Result of one before/after comparison.

    Attributes
    ----------
    events_before, events_after : counts
    exposure_before, exposure_after : exposures (e.g. vehicle-km)
    rate_before, rate_after : raw rates, events per unit exposure
    expected_after : events expected after without change (EB, exposure and trend)
    rate_ratio : posterior median of after/before rate (1 = no change, 0.5 = halved)
    ratio_lo, ratio_hi : its ``1 - alpha`` interval
    index_of_effectiveness : Hauer's θ (bias-corrected E_a / expected_after)
    p_value : two-sided, exact under the negative binomial of no change
    changed : ``p_value < alpha``
    direction : 'decrease' | 'increase' | 'none'
    alpha : test level
    """

    events_before: int
    events_after: int
    exposure_before: float
    exposure_after: float
    rate_before: float
    rate_after: float
    expected_after: float
    rate_ratio: float
    ratio_lo: float
    ratio_hi: float
    index_of_effectiveness: float
    p_value: float
    changed: bool
    direction: str
    alpha: float

    def as_dict(self) -> dict:
        return asdict(self)


def before_after(
    events_before: int,
    exposure_before: float,
    events_after: int,
    exposure_after: float,
    *,
    prior_alpha: float = 0.0,
    prior_beta: float = 0.0,
    prior_rates: np.ndarray | None = None,
    prior_weights: np.ndarray | None = None,
    prior_bandwidth: float = PRIOR_BANDWIDTH,
    comparison: tuple[float, float, float, float] | None = None,
    period_variance: float = 0.0,
    alpha: float = 0.05,
) -> BeforeAfter:
    """Compare the event rate of a place before and after a date.

    Parameters
    ----------
    events_before, events_after : int
        Harsh events at the place in each period (>= 0).
    exposure_before, exposure_after : float
        Exposure in each period (> 0), in the unit of the prior (vehicle-km).
    prior_alpha, prior_beta : float
        Gamma prior of the place's rate from similar places (shape, rate in exposure
        units), e.g. ``HotspotRanking.prior_alpha/prior_beta`` of a ranking of the before
        period. 0 and 0: no shrinkage (no correction for regression to the mean).
    prior_rates, prior_weights : (k,) array_like, optional
        A discrete prior of the place's rate (events per unit exposure) and its
        probabilities, e.g. ``HotspotRanking.prior_rates_of(zone)`` and
        ``.multiplier_weights`` of a ranking of the before period; replaces the Gamma
        prior (see the module docstring).
    prior_bandwidth : float
        Gaussian kernel spreading each point of a discrete prior over its neighbours, in
        natural log of the rate (>= 0; 0: the prior as given). It acts only between
        points a few bandwidths apart: use a fine grid.
    comparison : (events_before, exposure_before, events_after, exposure_after), optional
        An untreated comparison group: its rate ratio after/before is the trend ``g``
        applied to the expected after count. Its own uncertainty (relative variance about
        ``1/C_b + 1/C_a`` for counts ``C``) is added to ``period_variance``.
    period_variance : float
        ``τ²``, the variance of a place's rate ratio between two periods without change
        (:func:`period_variance` on untreated places; see the module docstring). 0: none.
    alpha : float
        Test level (two-sided), also sets the interval (``1 - alpha``).

    Returns
    -------
    BeforeAfter

    Raises
    ------
    ValueError
        On negative counts, non-positive exposure, a negative prior or variance, or
        ``alpha`` outside (0, 1).

    Examples
    --------
    >>> r = before_after(100, 50.0, 48, 50.0)
    >>> r.changed, r.direction, round(r.rate_ratio, 2)
    (True, 'decrease', 0.48)
    >>> before_after(100, 50.0, 90, 50.0).changed
    False
    """
    eb, ea = int(events_before), int(events_after)
    xb, xa = float(exposure_before), float(exposure_after)
    if eb < 0 or ea < 0:
        raise ValueError(f"counts must be >= 0; got {events_before=}, {events_after=}")
    if not (xb > 0 and xa > 0):
        raise ValueError(f"exposures must be > 0; got {exposure_before=}, {exposure_after=}")
    if prior_alpha < 0 or prior_beta < 0:
        raise ValueError(f"the prior must be >= 0; got {prior_alpha=}, {prior_beta=}")
    if not 0 < alpha < 1:
        raise ValueError(f"{alpha=} must be in (0, 1)")
    tau2 = _check_variance(period_variance)
    trend = 1.0
    if comparison is not None:
        trend, trend_var = _trend(comparison)
        tau2 = (1.0 + tau2) * (1.0 + trend_var) - 1.0
    if prior_rates is not None:
        rates, post = _discrete_posterior(eb, xb, prior_rates, prior_weights, prior_bandwidth)
        return _compare_discrete(eb, xb, ea, xa, rates, post, trend, tau2, alpha)
    a_post = prior_alpha + eb
    b_post = prior_beta + xb
    if a_post <= 0:
        a_post = 0.5  # no event and no prior: Jeffreys
    a_wide, b_wide = _with_period_variance(a_post, b_post, tau2)
    r = _compare(eb, xb, ea, xa, a_wide, b_wide, trend, alpha)
    if tau2 == 0:
        return r
    # the period variation widens the interval; the estimate of the change stays the
    # median without it (ε is skewed: its reciprocal's median is not 1)
    median = float(_f_ratio_quantiles(ea, xa, a_post, b_post, trend, alpha)[1])
    return replace(r, rate_ratio=median)


def _trend(comparison: tuple[float, float, float, float]) -> tuple[float, float]:
    """Mean and relative variance of the comparison group's rate ratio after/before, its
    rates having Jeffreys posteriors ``Gamma(C + 1/2, X)`` (independent): ``E[1/λ_b]``
    and ``E[1/λ_b²]`` are finite from 2 events before."""
    cb, cxb, ca, cxa = (float(c) for c in comparison)
    if cb < 2 or ca < 1 or cxb <= 0 or cxa <= 0:
        raise ValueError(f"comparison needs exposure and events in both periods (>= 2 before); got {comparison}")
    m1 = (ca + 0.5) / cxa * cxb / (cb - 0.5)
    m2 = (ca + 0.5) * (ca + 1.5) / cxa**2 * cxb**2 / ((cb - 0.5) * (cb - 1.5))
    return m1, m2 / m1**2 - 1.0


def _check_variance(tau2: float) -> float:
    tau2 = float(tau2)
    if not (tau2 >= 0 and np.isfinite(tau2)):
        raise ValueError(f"period_variance must be a finite number >= 0; got {tau2}")
    return tau2


def _with_period_variance(a: float, b: float, tau2: float) -> tuple[float, float]:
    """Gamma(a, b) of the mean and variance of ``λ ε``, ``λ ~ Gamma(a, b)``, ``ε`` of mean 1
    and variance ``τ²``: ``Var = E[λ]² ((1 + τ²)(1 + 1/a) - 1)``, so the shape falls to
    ``a / (1 + τ² (1 + a))`` and the mean stays."""
    if tau2 == 0:
        return a, b
    a2 = a / (1.0 + tau2 * (1.0 + a))
    return a2, b * a2 / a


def _predictive(k: np.ndarray, mu: np.ndarray, tau2: float, kind: str) -> np.ndarray:
    """P(E = k) ('pmf'), P(E <= k) ('cdf') or P(E >= k) ('sf', k >= 0) of the after
    count with mean ``mu`` without change: Poisson, or negative binomial with shape
    ``1/τ²`` when the place's rate varies between periods."""
    if tau2 == 0:
        d = stats.poisson(mu)
    else:
        d = stats.nbinom(1.0 / tau2, 1.0 / (1.0 + tau2 * mu))
    if kind == "sf":
        return d.sf(k - 1)
    return getattr(d, kind)(k)


def _discrete_posterior(eb: int, xb: float, rates: np.ndarray, weights: np.ndarray | None,
                        bandwidth: float = 0.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Posterior probabilities of a discrete rate prior after ``eb`` events in ``xb``."""
    r = np.asarray(rates, float)
    w = np.full(r.shape, 1.0 / r.size) if weights is None else np.asarray(weights, float)
    if r.ndim != 1 or r.shape != w.shape or r.size == 0 or (r < 0).any() or (w < 0).any() or not w.sum() > 0:
        raise ValueError("prior_rates and prior_weights must be 1-D, of equal length, >= 0, weights not all 0")
    w = smooth_prior(r, w, bandwidth)
    ll = stats.poisson.logpmf(eb, r * xb) + np.log(np.maximum(w, 1e-300))
    post = np.exp(ll - ll.max())
    return r, post / post.sum()


def smooth_prior(rates: np.ndarray, weights: np.ndarray, bandwidth: float) -> np.ndarray:
    """Weights of a discrete prior with each point's mass spread over the points by a
    Gaussian kernel of ``bandwidth`` in log rate (each point's mass is kept; points at
    rate 0 keep theirs)."""
    r = np.asarray(rates, float)
    w = np.asarray(weights, float)
    bw = float(bandwidth)
    if not (bw >= 0 and np.isfinite(bw)):
        raise ValueError(f"prior_bandwidth must be a finite number >= 0; got {bandwidth}")
    pos = r > 0
    if bw == 0 or pos.sum() < 2:
        return w
    lr = np.log(r[pos])
    k = np.exp(-0.5 * ((lr[:, None] - lr[None, :]) / bw) ** 2)
    out = w.copy()
    out[pos] = (k / k.sum(axis=0, keepdims=True)) @ w[pos]
    return out


def _mixture_pmf(rates: np.ndarray, post: np.ndarray, x: float, n_max: int, tau2: float = 0.0) -> np.ndarray:
    """P(E = 0..n_max) for E ~ Poisson(λ ε x), λ discrete (``rates``, ``post``), ``ε`` of
    variance ``tau2`` (see :func:`_predictive`)."""
    k = np.arange(n_max + 1)
    return (post[None, :] * _predictive(k[:, None], rates[None, :] * x, tau2, "pmf")).sum(axis=1)


def _compare_discrete(eb: int, xb: float, ea: int, xa: float, rates: np.ndarray, post: np.ndarray, trend: float,
                      tau2: float, alpha: float) -> BeforeAfter:  # fmt: skip
    mu = rates * xa * trend  # after counts expected under each prior point
    expected = float(post @ mu)
    var_pi = float(post @ (mu**2 * (1.0 + tau2))) - expected**2
    cdf = float(post @ _predictive(ea, mu, tau2, "cdf"))
    sf = float(post @ _predictive(ea, mu, tau2, "sf"))
    q = _ratio_quantiles_discrete(ea, xa, rates * trend, post, alpha, tau2)
    if tau2 > 0:  # as in before_after: the median without the skewed ε
        q[1] = _ratio_quantiles_discrete(ea, xa, rates * trend, post, alpha)[1]
    return _result(eb, xb, ea, xa, expected, var_pi, cdf, sf, q, alpha)


def _ratio_quantiles_discrete(ea: int, xa: float, rates_b: np.ndarray, post: np.ndarray, alpha: float,
                              tau2: float = 0.0) -> np.ndarray:  # fmt: skip
    """Quantiles (alpha/2, median, 1-alpha/2) of λ_after / (λ_before ε): λ_after ~
    Gamma(ea + 1/2, xa) (Jeffreys), λ_before discrete, ``ε`` the period variation
    (equal-probability nodes of its Gamma); CDF evaluated on a log grid."""
    ok = (post > 1e-12) & (rates_b > 0)
    if not ok.any():
        return np.array([0.0, np.inf, np.inf])
    if tau2 > 0:
        eps = _gamma_nodes(1.0, tau2)
        rb = (rates_b[ok][:, None] * eps[None, :]).ravel()
        w = np.repeat(post[ok], _EPS_NODES) / _EPS_NODES
    else:
        rb, w = rates_b[ok], post[ok]
    t = np.geomspace(1e-4, 1e4, 4001)
    cdf = (w[None, :] * stats.gamma.cdf(t[:, None] * rb[None, :], ea + 0.5, scale=1.0 / xa)).sum(axis=1)
    cdf /= w.sum()
    return np.interp([alpha / 2, 0.5, 1 - alpha / 2], cdf, t)


#: Nodes of the period variation ``ε`` in the discrete prior's rate-ratio interval.
_EPS_NODES = 16


def _gamma_nodes(mean: float, rel_var: float) -> np.ndarray:
    """``_EPS_NODES`` equal-probability nodes (mid-quantiles) of the Gamma of this mean and
    relative variance."""
    return stats.gamma.ppf((np.arange(_EPS_NODES) + 0.5) / _EPS_NODES, 1.0 / rel_var, scale=mean * rel_var)


def before_after_sites(
    events_before: np.ndarray,
    exposure_before: np.ndarray,
    events_after: np.ndarray,
    exposure_after: np.ndarray,
    *,
    prior_alpha: np.ndarray | float = 0.0,
    prior_beta: np.ndarray | float = 0.0,
    prior_rates: np.ndarray | None = None,
    prior_weights: np.ndarray | None = None,
    prior_bandwidth: float = PRIOR_BANDWIDTH,
    comparison: tuple[float, float, float, float] | None = None,
    period_variance: float = 0.0,
    alpha: float = 0.05,
) -> BeforeAfter:
    """:func:`before_after` for a programme of several treated sites at one date.

    Each site keeps its own prior (its group's); the expected after count without change
    is the sum of the sites' EB predictions (Hauer's method). Gamma priors: its Gamma
    distribution is moment-matched to that sum before the same exact test. Discrete priors
    (``prior_rates`` (n_sites, k), ``prior_weights`` (k,) or (n_sites, k)): the exact
    distribution of the total after count (the sites' mixture predictives convolved) gives
    the p-value; the rate-ratio interval uses the moment-matched Gamma of the expected
    after count. ``period_variance``: each site's own variation between periods,
    independent across sites (as in :func:`before_after`). ``comparison``: the trend is
    common to all sites, so its uncertainty is not averaged out by their number: the
    total's distribution is mixed over the trend's posterior (equal-probability nodes;
    Gamma priors: moment-matched). ``prior_bandwidth``: as in :func:`before_after`.
    """
    tau2 = _check_variance(period_variance)
    trend = _trend(comparison) if comparison is not None else (1.0, 0.0)
    eb = np.asarray(events_before, float)
    xb = np.asarray(exposure_before, float)
    ea = np.asarray(events_after, float)
    xa = np.asarray(exposure_after, float)
    a0 = np.broadcast_to(np.asarray(prior_alpha, float), eb.shape)
    b0 = np.broadcast_to(np.asarray(prior_beta, float), eb.shape)
    if not (eb.shape == xb.shape == ea.shape == xa.shape) or eb.ndim != 1 or eb.size == 0:
        raise ValueError("per-site arrays must be 1-D, non-empty and of equal length")
    if (eb < 0).any() or (ea < 0).any() or not (xb > 0).all() or not (xa > 0).all():
        raise ValueError("counts must be >= 0 and exposures > 0")
    if prior_rates is not None:
        return _sites_discrete(eb, xb, ea, xa, np.asarray(prior_rates, float), prior_weights, tau2, trend, alpha,
                               prior_bandwidth)  # fmt: skip
    a_post = np.maximum(a0 + eb, 0.5)
    b_post = b0 + xb
    a_post, b_post = _with_period_variance(a_post, b_post, tau2)
    pi = float((a_post / b_post * xa).sum())
    var = float((a_post / b_post**2 * xa**2).sum())
    g, v = trend  # × a common trend: E[gS] = g E[S], Var = g²((1 + v)(Var S + E[S]²) - E[S]²)
    var = g * g * ((1.0 + v) * (var + pi * pi) - pi * pi)
    pi *= g
    shape = pi * pi / var  # Gamma(shape, rate) of the expected after count
    xa_tot = float(xa.sum())
    # express it as a rate posterior Gamma(shape, shape / (pi / xa_tot)) per unit exposure
    return _compare(int(eb.sum()), float(xb.sum()), int(ea.sum()), xa_tot, shape, shape * xa_tot / pi, 1.0, alpha)


def _sites_discrete(eb: np.ndarray, xb: np.ndarray, ea: np.ndarray, xa: np.ndarray, rates: np.ndarray,
                    weights: np.ndarray | None, tau2: float, trend: tuple[float, float], alpha: float,
                    bandwidth: float) -> BeforeAfter:  # fmt: skip
    if rates.ndim != 2 or rates.shape[0] != eb.size:
        raise ValueError(f"prior_rates must be (n_sites, k); got {rates.shape} for {eb.size} sites")
    w = None if weights is None else np.broadcast_to(np.asarray(weights, float), rates.shape)
    posts = [_discrete_posterior(int(eb[i]), float(xb[i]), rates[i], None if w is None else w[i], bandwidth)[1]
             for i in range(eb.size)]  # fmt: skip
    mu = [rates[i] * xa[i] for i in range(eb.size)]
    s1 = float(sum(p @ m for p, m in zip(posts, mu)))
    var_s = float(sum(p @ (m**2 * (1.0 + tau2)) - (p @ m) ** 2 for p, m in zip(posts, mu)))
    g, v = trend
    expected = g * s1
    var_pi = g * g * ((1.0 + v) * (var_s + s1 * s1) - s1 * s1)
    ea_tot = int(ea.sum())
    # the total's exact distribution, far enough into the tail to hold ea_tot
    n_max = int(max(ea_tot, expected + 12.0 * np.sqrt(expected + var_pi + 1.0)) + 20)
    if v > 0:  # the common trend: equal-probability nodes of its Gamma posterior
        nodes = _gamma_nodes(g, v)
    else:
        nodes = np.array([g])
    pmf = np.zeros(n_max + 1)
    for gj in nodes:
        pj = np.ones(1)
        for p, m in zip(posts, mu):
            pj = np.convolve(pj, _mixture_pmf(m * gj, p, 1.0, n_max, tau2))[: n_max + 1]  # after means per prior point
        pmf[: len(pj)] += pj / len(nodes)
    cdf = float(pmf[: ea_tot + 1].sum())
    sf = float(max(1.0 - pmf[:ea_tot].sum(), 0.0))
    xa_tot = float(xa.sum())
    shape = expected**2 / var_pi if var_pi > 0 else 1e6
    a_post, b_post = shape, shape * xa_tot / expected
    q = _f_ratio_quantiles(ea_tot, xa_tot, a_post, b_post, 1.0, alpha)
    return _result(int(eb.sum()), float(xb.sum()), ea_tot, xa_tot, expected, var_pi, cdf, sf, q, alpha)


def _f_ratio_quantiles(ea: int, xa: float, a_post: float, b_post: float, trend: float, alpha: float) -> np.ndarray:
    # posterior of the rate ratio: (Ga(ea + .5, xa) / Ga(a_post, b_post)) / trend
    d1, d2 = 2.0 * (ea + 0.5), 2.0 * a_post
    scale = ((ea + 0.5) / xa) / (a_post / b_post) / trend
    return stats.f.ppf([alpha / 2, 0.5, 1 - alpha / 2], d1, d2) * scale


def _compare(eb: int, xb: float, ea: int, xa: float, a_post: float, b_post: float, trend: float, alpha: float) -> BeforeAfter:
    expected = a_post / b_post * xa * trend
    var_pi = a_post / b_post**2 * (xa * trend) ** 2
    # exact predictive distribution of the after count if nothing changed
    p_nb = b_post / (b_post + xa * trend)
    cdf = float(stats.nbinom.cdf(ea, a_post, p_nb))
    sf = float(stats.nbinom.sf(ea - 1, a_post, p_nb))  # P(E_a >= ea)
    q = _f_ratio_quantiles(ea, xa, a_post, b_post, trend, alpha)
    return _result(eb, xb, ea, xa, expected, var_pi, cdf, sf, q, alpha)


def _result(eb: int, xb: float, ea: int, xa: float, expected: float, var_pi: float, cdf: float, sf: float,
            q: np.ndarray, alpha: float) -> BeforeAfter:  # fmt: skip
    p_value = float(min(1.0, 2.0 * min(cdf, sf)))
    theta = (ea / expected) / (1.0 + var_pi / expected**2) if expected > 0 else float("nan")
    changed = p_value < alpha
    direction = "none" if not changed else ("decrease" if ea < expected else "increase")
    return BeforeAfter(
        events_before=eb, events_after=ea, exposure_before=xb, exposure_after=xa,
        rate_before=eb / xb, rate_after=ea / xa, expected_after=float(expected),
        rate_ratio=float(q[1]), ratio_lo=float(q[0]), ratio_hi=float(q[2]),
        index_of_effectiveness=float(theta), p_value=p_value, changed=bool(changed),
        direction=direction, alpha=float(alpha),
    )  # fmt: skip


def period_counts(
    event_t_s: np.ndarray,
    event_in_place: np.ndarray,
    pass_t_s: np.ndarray,
    pass_exposure: np.ndarray,
    date_s: float,
    *,
    gap_s: float = 0.0,
) -> tuple[int, float, int, float]:
    """Counts and exposures before and after ``date_s`` for one place.

    Parameters
    ----------
    event_t_s : (m,) event times, epoch s
    event_in_place : (m,) bool, the event is in the place under study
    pass_t_s : (k,) entry times of the passes over the place, epoch s
    pass_exposure : (k,) exposure of each pass (vehicle-km, or 1 per pass)
    date_s : the works' date, epoch s
    gap_s : a period after the date left out (works in progress), s

    Returns
    -------
    (events_before, exposure_before, events_after, exposure_after)
    """
    et = np.asarray(event_t_s, float)
    inside = np.asarray(event_in_place, bool)
    pt = np.asarray(pass_t_s, float)
    px = np.asarray(pass_exposure, float)
    eb = int(np.count_nonzero(inside & (et < date_s)))
    ea = int(np.count_nonzero(inside & (et >= date_s + gap_s)))
    xb = float(px[pt < date_s].sum())
    xa = float(px[pt >= date_s + gap_s].sum())
    return eb, xb, ea, xa


@dataclass(frozen=True)
class PeriodVariance:
    """How much untreated places' rates moved between two periods.

    Attributes
    ----------
    variance : τ², variance of a place's rate ratio beyond Poisson noise (>= 0), for
        ``period_variance=`` of :func:`before_after`
    trend : pooled after/before rate ratio of the places (1 = no general change)
    n_sites : places used (>= 2 events over both periods)
    n_events : their events, both periods
    dispersion : Pearson χ² / (n_sites - 1) of the binomial split without ``ε`` (≈ 1 when
        the places vary no more than Poisson counts)
    """

    variance: float
    trend: float
    n_sites: int
    n_events: int
    dispersion: float

    def as_dict(self) -> dict:
        return asdict(self)


def period_variance(
    events_before: np.ndarray,
    exposure_before: np.ndarray,
    events_after: np.ndarray,
    exposure_after: np.ndarray,
    *,
    min_events: int = 2,
) -> PeriodVariance:
    """Estimate a place's variation between two periods from untreated places.

    Given its total ``n = E_b + E_a``, a place's after count is binomial with
    ``p = g X_a / (X_b + g X_a)`` (``g`` the trend) whatever its rate, so no prior is
    needed. With the rate ratio ``ε`` of variance ``τ²`` (``logit p`` shifted by
    ``log ε``), ``E[(E_a - n p)²] ≈ n p q + n (n - 1) (p q)² τ²``: ``τ²`` is the
    method-of-moments solution pooled over places, clipped at 0. Use places that are not
    under study and were not chosen for their record (e.g. every zone of a network but the
    treated ones and their neighbours).

    Parameters
    ----------
    events_before, exposure_before, events_after, exposure_after : (n,) array_like
        Counts and exposures of each place in each period.
    min_events : int
        Places with fewer events over both periods carry no information on ``τ²``
        (a single event is split without any spread to measure); at least 2.

    Returns
    -------
    PeriodVariance

    Raises
    ------
    ValueError
        On arrays of different shapes, negative counts or exposures, or fewer than 3
        usable places (exposure in both periods, ``min_events``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> lam = rng.gamma(2.0, 20.0, 2000)
    >>> eps = rng.gamma(1 / 0.04, 0.04, 2000)  # rates vary by 20 % between periods
    >>> pv = period_variance(rng.poisson(lam), np.ones(2000), rng.poisson(lam * eps), np.ones(2000))
    >>> round(pv.variance, 2), round(pv.trend, 2)
    (0.04, 1.01)
    """
    eb, xb, ea, xa = (np.asarray(a, float) for a in (events_before, exposure_before, events_after, exposure_after))
    if not (eb.shape == xb.shape == ea.shape == xa.shape) or eb.ndim != 1:
        raise ValueError("per-place arrays must be 1-D and of equal length")
    if (eb < 0).any() or (ea < 0).any() or (xb < 0).any() or (xa < 0).any():
        raise ValueError("counts and exposures must be >= 0")
    n = eb + ea
    use = (xb > 0) & (xa > 0) & (n >= max(int(min_events), 2))
    if np.count_nonzero(use) < 3:
        raise ValueError(f"need at least 3 places with exposure in both periods and >= {max(int(min_events), 2)} events; "
                         f"got {np.count_nonzero(use)}")  # fmt: skip
    eb, xb, ea, xa, n = eb[use], xb[use], ea[use], xa[use], n[use]
    sb, sa = float(eb.sum()), float(ea.sum())
    # pooled rates: with no event in a period the trend is 0 or infinite; keep it finite
    trend = ((sa + 0.5) / xa.sum()) / ((sb + 0.5) / xb.sum())
    p = trend * xa / (xb + trend * xa)
    pq = p * (1.0 - p)
    r2 = (ea - n * p) ** 2
    tau2 = max(float((r2 - n * pq).sum()) / float((n * (n - 1.0) * pq**2).sum()), 0.0)
    dispersion = float((r2 / (n * pq)).sum()) / max(len(n) - 1, 1)
    return PeriodVariance(variance=tau2, trend=float(trend), n_sites=int(len(n)), n_events=int(sb + sa), dispersion=dispersion)
