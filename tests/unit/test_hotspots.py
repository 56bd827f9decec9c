"""agents.hotspots: zoning, attribution to junctions, exposure, empirical-Bayes ranking."""

from __future__ import annotations

import numpy as np
import pytest

from agents.hotspots import MULT_GRID, attribute_events, format_hotspots, multiplier_prior, rank_hotspots, zoning


@pytest.fixture(scope="module")
def zn(plaisir_net):
    return zoning(plaisir_net)


def a_junction_segment(net, zn, min_len=150.0):
    """A segment longer than ``min_len`` whose end is a junction zone and which has a middle."""
    ok = (zn.seg_zone_end >= 0) & (zn.seg_zone_mid >= 0) & (net.length_m > min_len)
    return int(np.flatnonzero(ok)[0])


class TestZoning:
    def test_parts_cover_segments(self, plaisir_net, zn):
        assert len(zn) > 100
        assert (zn.seg_cut_start_m <= zn.seg_cut_end_m + 1e-9).all()
        assert (zn.seg_cut_end_m <= plaisir_net.length_m + 1e-9).all()
        assert set(np.unique(zn.zone_kind)) == {"junction", "segment"}
        assert len(set(zn.zone_id)) == len(zn)

    def test_street_directions_share_a_zone(self, plaisir_net, zn):
        rev = plaisir_net.reverse
        two = np.flatnonzero((rev >= 0) & (zn.seg_zone_mid >= 0) & (zn.seg_zone_mid[np.maximum(rev, 0)] >= 0))
        assert len(two) > 500
        assert (zn.seg_zone_mid[two] == zn.seg_zone_mid[rev[two]]).all()

    def test_exposure(self, plaisir_net, zn):
        s = a_junction_segment(plaisir_net, zn)
        n = np.zeros(len(plaisir_net))
        n[s] = 10
        passes, vkm = zn.exposure(n)
        assert vkm.sum() == pytest.approx(10 * plaisir_net.length_m[s] / 1000)
        assert passes[zn.seg_zone_end[s]] == 10  # it enters the junction
        assert passes[zn.seg_zone_mid[s]] == 10


class TestAttributeEvents:
    def test_near_junction_goes_to_junction(self, plaisir_net, zn):
        s = a_junction_segment(plaisir_net, zn)
        length = plaisir_net.length_m[s]
        z = attribute_events(zn, np.array([s, s, -1]), np.array([length - 10.0, length / 2, 0.0]))
        assert z[0] == zn.seg_zone_end[s]
        assert z[1] == zn.seg_zone_mid[s]
        assert z[2] == -1

    def test_functional_area_crosses_split_street(self, plaisir_net):
        """A street split in two pieces at a node that is no junction: the approach of the
        junction continues onto the upstream piece (its events are the junction's)."""
        net = plaisir_net
        zn = zoning(net, approach_m=40.0)
        a = np.concatenate([net.from_node, net.to_node])
        b = np.concatenate([net.to_node, net.from_node])
        pairs = np.unique(np.stack([a, b], axis=1), axis=0)
        deg = np.bincount(pairs[:, 0], minlength=net.n_nodes)
        node_is_j = np.zeros(net.n_nodes, bool)
        node_is_j[net.to_node[zn.seg_enters >= 0]] = True
        # s ends at a degree-2 node; its continuation c enters a junction zone within 30 m
        cand = [
            (s, c) for s in np.flatnonzero((deg[net.to_node] == 2) & (net.length_m > 60.0))
            for c in np.flatnonzero((net.from_node == net.to_node[s]) & (net.to_node != net.from_node[s]))
            if zn.seg_enters[c] >= 0 and net.length_m[c] < 30.0
        ]  # fmt: skip
        assert cand, "the network has split streets next to junctions"
        s, c = cand[0]
        j = zn.seg_enters[c]
        left = 40.0 - net.length_m[c]  # of the 40 m approach, on s
        z = attribute_events(zn, np.array([s, s]), np.array([net.length_m[s] - left + 2.0, net.length_m[s] - left - 2.0]))
        assert z[0] == j  # within 40 m of the junction along the road
        assert z[1] != j
        assert zn.seg_zone_end[s] == j

    def test_approach_longer_than_exit(self, plaisir_net):
        net = plaisir_net
        zn2 = zoning(net, radius_m=20.0, approach_m=60.0)
        ok = (zn2.seg_zone_end >= 0) & (zn2.seg_zone_start >= 0) & (zn2.seg_zone_mid >= 0) & (net.length_m > 200)
        s = int(np.flatnonzero(ok)[0])
        length = net.length_m[s]
        z = attribute_events(zn2, np.full(4, s), np.array([length - 55.0, length - 65.0, 15.0, 25.0]))
        assert list(z) == [zn2.seg_zone_end[s], zn2.seg_zone_mid[s], zn2.seg_zone_start[s], zn2.seg_zone_mid[s]]
        assert zn2.seg_cut_end_m[s] == pytest.approx(length - 60.0)
        assert zn2.seg_cut_start_m[s] == pytest.approx(20.0)
        with pytest.raises(ValueError, match="approach_m"):
            zoning(net, approach_m=-1.0)

    def test_short_link_goes_to_the_junction_ahead(self, plaisir_net):
        """Where the two functional areas of a link overlap, the approach comes first; a
        short middle between them is split in proportion to them."""
        net = plaisir_net
        zn2 = zoning(net, radius_m=20.0, approach_m=60.0)
        rev = net.reverse
        # two-way links from one junction zone to another (each direction enters one)
        ok = (rev >= 0) & (zn2.seg_enters >= 0) & (zn2.seg_enters[np.maximum(rev, 0)] >= 0)
        ok &= zn2.seg_enters != zn2.seg_enters[np.maximum(rev, 0)]
        s = int(np.flatnonzero(ok & (net.length_m > 30) & (net.length_m < 60))[0])
        assert zn2.seg_cut_start_m[s] == pytest.approx(0.0, abs=1e-9)  # all approach
        z = attribute_events(zn2, np.array([s]), np.array([2.0]))
        assert z[0] == zn2.seg_enters[s]
        s = int(np.flatnonzero(ok & (net.length_m > 81) & (net.length_m < 99) & (zn2.seg_zone_mid < 0))[0])
        gap = net.length_m[s] - 80.0  # the 60 m approach and the 20 m exit leave a short middle
        assert zn2.seg_cut_start_m[s] == pytest.approx(20.0 + gap * 20.0 / 80.0, rel=1e-6)

    def test_empty_and_shapes(self, zn):
        assert attribute_events(zn, np.zeros(0, int), np.zeros(0)).shape == (0,)
        with pytest.raises(ValueError, match="same shape"):
            attribute_events(zn, np.zeros(2, int), np.zeros(3))


class TestRankHotspots:
    def test_exposure_not_counts(self, plaisir_net, zn):
        """A busy street with many events but an ordinary rate ranks below a quiet
        junction with a high rate."""
        net = plaisir_net
        rng = np.random.default_rng(0)
        n = np.full(len(net), 20.0)
        segs = np.flatnonzero(zn.seg_zone_mid >= 0)
        busy = segs[np.argmax(net.length_m[segs])]
        n[busy] = n[net.reverse[busy]] = 2000.0
        hot = a_junction_segment(net, zn)
        # background: 0.2 events per vehicle-km everywhere
        lam = 0.2 * n * net.length_m / 1000
        k = rng.poisson(lam)
        seg = np.repeat(np.arange(len(net)), k)
        off = rng.uniform(0, 1, seg.size) * net.length_m[seg]
        seg = np.r_[seg, np.full(15, hot)]
        off = np.r_[off, np.full(15, net.length_m[hot] - 5.0)]
        r = rank_hotspots(n, seg, off, net)
        assert r.zone[0] == zn.seg_zone_end[hot]
        busy_rank = int(np.flatnonzero(r.zone == zn.seg_zone_mid[busy])[0])
        assert busy_rank > 10
        assert r.n_events[busy_rank] > r.n_events[0]  # more events, yet not a hotspot
        assert (r.eb_lo_per_vkm <= r.eb_rate_per_vkm).all() and (r.eb_rate_per_vkm <= r.eb_hi_per_vkm).all()

    def test_shrinkage(self, plaisir_net):
        """Same raw rate, less exposure: pulled harder towards the group mean."""
        net = plaisir_net
        zn = zoning(net)
        segs = np.flatnonzero((zn.seg_zone_mid >= 0) & (net.highway == "residential") & (net.length_m > 150))[:2]
        n = np.full(len(net), 10.0)
        n[segs[1]] = 100.0
        ev_seg = np.r_[np.full(5, segs[0]), np.full(50, segs[1])]
        off = net.length_m[ev_seg] / 2
        r = rank_hotspots(n, ev_seg, off, net)
        i0 = int(np.flatnonzero(r.zone == zn.seg_zone_mid[segs[0]])[0])
        i1 = int(np.flatnonzero(r.zone == zn.seg_zone_mid[segs[1]])[0])
        assert r.eb_rate_per_vkm[i1] > r.eb_rate_per_vkm[i0]

    def test_no_events(self, plaisir_net):
        r = rank_hotspots(np.full(len(plaisir_net), 20.0), np.zeros(0, int), np.zeros(0), plaisir_net)
        assert len(r) > 0 and (r.n_events == 0).all()

    def test_exceptions(self, plaisir_net):
        with pytest.raises(ValueError, match="one entry per segment"):
            rank_hotspots(np.zeros(3), [], [], plaisir_net)
        with pytest.raises(ValueError, match="level"):
            rank_hotspots(np.zeros(len(plaisir_net)), [], [], plaisir_net, level=1.5)
        with pytest.raises(ValueError, match="rank_by"):
            rank_hotspots(np.zeros(len(plaisir_net)), [], [], plaisir_net, rank_by="max")

    def test_format(self, plaisir_net, zn):
        s = a_junction_segment(plaisir_net, zn)
        seg = np.full(12, s)
        off = np.full(12, plaisir_net.length_m[s] - 5.0)
        r = rank_hotspots(np.full(len(plaisir_net), 30.0), seg, off, plaisir_net)
        text = format_hotspots(r, plaisir_net, top=3)
        lines = text.splitlines()
        assert len(lines) == 4 and "junction of" in lines[1] and "48." in lines[1]
        assert r.rows()[0]["n_events"] == 12


class TestDistinctPlaces:
    """Non-maximum suppression: one hotspot seen as two neighbouring zones is listed once."""

    @staticmethod
    def junction_and_street(net, zn, max_m=70.0):
        """A segment whose end is a junction zone and whose middle zone's centre is < max_m away."""
        ok = np.flatnonzero((zn.seg_zone_end >= 0) & (zn.seg_zone_mid >= 0) & (net.length_m > 90) & (net.reverse >= 0))
        for s in ok:
            j, m = zn.seg_zone_end[s], zn.seg_zone_mid[s]
            if np.hypot(zn.zone_x_m[j] - zn.zone_x_m[m], zn.zone_y_m[j] - zn.zone_y_m[m]) < max_m:
                return int(s)
        pytest.skip("no short street next to a junction")

    def test_two_adjacent_zones_collapse(self, plaisir_net, zn):
        net = plaisir_net
        s = self.junction_and_street(net, zn)
        j, m = zn.seg_zone_end[s], zn.seg_zone_mid[s]
        length = net.length_m[s]
        # one hotspot: braking on the approach spills from the junction's area into the street's
        seg = np.full(45, s)
        off = np.r_[np.full(25, length - 10.0), np.full(20, length / 2)]
        n = np.full(len(net), 30.0)
        off_r = rank_hotspots(n, seg, off, net, suppress_m=0.0)
        assert {int(off_r.zone[0]), int(off_r.zone[1])} == {j, m}  # without suppression: twice in the top 2
        r = rank_hotspots(n, seg, off, net)
        assert r.zone[0] in (j, m)
        other = m if r.zone[0] == j else j
        pos = int(np.flatnonzero(r.zone == other)[0])
        assert pos >= 10  # set aside, after every distinct place ...
        assert len(r) == len(off_r) and set(r.zone) == set(off_r.zone)  # ... but still ranked (priors for before/after)
        assert r.n_events[pos] > 0 and r.n_events[1:10].sum() == 0

    def test_distant_zones_stay(self, plaisir_net, zn):
        net = plaisir_net
        ok = np.flatnonzero((zn.seg_zone_end >= 0) & (zn.seg_zone_mid >= 0) & (net.length_m > 150))
        a = int(ok[0])
        ja = zn.seg_zone_end[a]
        far = ok[np.hypot(zn.zone_x_m[zn.seg_zone_end[ok]] - zn.zone_x_m[ja], zn.zone_y_m[zn.seg_zone_end[ok]] - zn.zone_y_m[ja]) > 500]
        b = int(far[0])
        seg = np.r_[np.full(20, a), np.full(20, b)]
        off = np.r_[np.full(20, net.length_m[a] - 5.0), np.full(20, net.length_m[b] - 5.0)]
        r = rank_hotspots(np.full(len(net), 30.0), seg, off, net)
        assert set(r.zone[:2].tolist()) == {ja, zn.seg_zone_end[b]}

    def test_suppress_neighbours(self):
        from agents.hotspots import suppress_neighbours

        x = np.array([0.0, 50.0, 100.0, 1000.0, 30.0])
        y = np.zeros(5)
        # ranked 0, 1, 2, 3, 4: 1 and 4 are near 0; 2 is 100 m from 0 and only near 1 (set aside): kept
        assert suppress_neighbours(np.arange(5), x, y, 80.0).tolist() == [0, 2, 3, 1, 4]
        assert suppress_neighbours(np.arange(5), x, y, 0.0).tolist() == [0, 1, 2, 3, 4]
        assert suppress_neighbours(np.array([3, 1]), x, y, 80.0).tolist() == [3, 1]

    def test_bad_distance(self, plaisir_net):
        with pytest.raises(ValueError, match="suppress_m"):
            rank_hotspots(np.zeros(len(plaisir_net)), [], [], plaisir_net, suppress_m=-1.0)


class TestMultiplierPrior:
    """The nonparametric prior of rate multipliers (Kiefer-Wolfowitz NPMLE by EM)."""

    @staticmethod
    def mixture(seed=0, n=3000, share=0.02, hot=8.0):
        rng = np.random.default_rng(seed)
        e = rng.uniform(0.2, 4.0, n)  # events expected at the group mean
        r = np.where(rng.random(n) < share, hot, rng.gamma(8.0, 1 / 8.0, n))  # ordinary: CV 0.35
        return rng.poisson(r * e), e, r

    def test_recovers_the_share_of_hotspots(self):
        y, e, r = self.mixture()
        w, post = multiplier_prior(y, e)
        assert w.sum() == pytest.approx(1.0) and np.allclose(post.sum(axis=1), 1.0)
        assert 0.01 < w[MULT_GRID > 3].sum() < 0.035  # truth: 0.02
        assert (post @ MULT_GRID)[r == 8.0].mean() > 4.0

    def test_low_exposure_hotspot_vs_chance_excess(self):
        """Three events where 0.2 were expected is far more telling than 18 where 8 were:
        the quiet place is probably a hotspot, the busy one is not (Gamma-mean ranking
        with a shape-4 prior orders them the other way round)."""
        y, e, _ = self.mixture(seed=1)
        y = np.r_[y, 3, 18]
        e = np.r_[e, 0.2, 8.0]
        _, post = multiplier_prior(y, e)
        p2 = post[:, MULT_GRID > 2].sum(axis=1)
        assert p2[-2] > 0.5 and p2[-1] < 0.1
        gamma_mean = (4 + y[-2:]) / (4 + e[-2:])  # shape-4 Gamma prior of mean 1
        assert gamma_mean[1] > gamma_mean[0]

    def test_excess_ranking_options(self, plaisir_net):
        net = plaisir_net
        with pytest.raises(ValueError, match="excess_factor"):
            rank_hotspots(np.full(len(net), 20.0), [], [], net, excess_factor=1.0)
        r = rank_hotspots(np.full(len(net), 20.0), np.zeros(0, int), np.zeros(0), net)
        assert r.multiplier_weights.sum() == pytest.approx(1.0) and (r.p_excess >= 0).all() and (r.p_excess <= 1).all()
        assert np.allclose(r.prior_rates(0), MULT_GRID * r.group_rate_per_vkm[0])
        assert "multiplier_grid" not in r.rows()[0]



class TestOrdinaryRate:
    """The reference rate of a group: that of its ordinary zones, not pulled up by hotspots."""

    def test_basic(self):
        from agents.hotspots import ordinary_rate

        rng = np.random.default_rng(0)
        x = rng.uniform(1.0, 20.0, 400)
        y = rng.poisson(0.1 * x).astype(float)
        y[:3] += 150.0  # three busy hotspots
        mean = y.sum() / x.sum()
        assert mean > 0.15  # the mean rate is pulled up by the three
        assert ordinary_rate(y, x) == pytest.approx(0.1, rel=0.12)
        assert ordinary_rate(y, x, p_out=0.0) == pytest.approx(mean)

    def test_empty_and_no_events(self):
        from agents.hotspots import ordinary_rate

        assert ordinary_rate(np.zeros(5), np.ones(5)) == 0.0
        assert ordinary_rate(np.zeros(0), np.zeros(0)) == 0.0

    def test_multipliers_relative_to_ordinary_zones(self, plaisir_net):
        """Three very harsh junctions do not shrink every other junction's multiplier."""
        net = plaisir_net
        zn = zoning(net)
        n = np.full(len(net), 50.0)
        rng = np.random.default_rng(1)
        k = rng.poisson(0.2 * n * net.length_m / 1000)  # background 0.2 events / vehicle-km
        seg = np.repeat(np.arange(len(net)), k)
        off = rng.uniform(0, 1, seg.size) * net.length_m[seg]
        hot = np.flatnonzero((zn.seg_zone_end >= 0) & (net.length_m > 100))[:3]
        seg = np.r_[seg, np.repeat(hot, 300)]
        off = np.r_[off, net.length_m[np.repeat(hot, 300)] - 10.0]
        # with the mean rate as reference (p_out=0) ordinary junctions look 0.3-0.8 x ordinary
        for p_out, lo, hi in ((1e-3, 0.8, 1.25), (0.0, 0.3, 0.8)):
            r = rank_hotspots(n, seg, off, net, ordinary_p=p_out)
            ordinary = (r.kind == "junction") & ~np.isin(r.zone, zn.seg_zone_end[hot])
            ratio = r.n_events[ordinary].sum() / (r.group_rate_per_vkm[ordinary] * r.vehicle_km[ordinary]).sum()
            assert lo < ratio < hi  # events of ordinary junctions / those expected at the reference


class TestRoundabouts:
    def test_one_way_street_networks_are_not_one_zone(self, plaisir_net):
        """Strongly connected one-way streets are a roundabout only when compact: no junction
        zone spans more than ~120 m (a 957 m network of one-way streets did: 173 m)."""
        import shapely

        net = plaisir_net
        zn = zoning(net)
        m = zn.seg_enters >= 0
        end = shapely.get_point(net.geom_m[m], -1)
        d = np.hypot(shapely.get_x(end) - zn.zone_x_m[zn.seg_enters[m]], shapely.get_y(end) - zn.zone_y_m[zn.seg_enters[m]])
        assert d.max() < 120.0
