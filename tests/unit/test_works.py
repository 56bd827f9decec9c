"""pipeline.works: a before/after study of zones on stored passes and events (no database)."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from agents.hotspots import attribute_events, zoning
from pipeline.works import PeriodInputs, WorksStudyError, study_works
from roadnet import load_network

DATE = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def net():
    return load_network()


@pytest.fixture(scope="module")
def zn(net):
    return zoning(net)


def _inputs(net, zn, rng, *, treated: str, extra_before: int, base_per_km: float = 0.6):
    """Events uniform along the network in both periods (same traffic), plus
    ``extra_before`` events in the treated zone before the works only."""
    n = np.full(len(net), 300.0)  # passes per segment and period
    length = net.length_m
    p = length / length.sum()

    def uniform(k):
        seg = rng.choice(len(net), size=k, p=p)
        return seg, rng.uniform(0.0, 1.0, k) * length[seg]

    km = float((length * n).sum()) / 1000.0
    sb, ob = uniform(rng.poisson(base_per_km * km / 1000.0))
    sa, oa = uniform(rng.poisson(base_per_km * km / 1000.0))
    z = int(np.flatnonzero(zn.zone_id == treated)[0])
    pool_s, pool_o = uniform(200_000)
    inside = attribute_events(zn, pool_s, pool_o) == z
    xs, xo = pool_s[inside][:extra_before], pool_o[inside][:extra_before]
    seg = np.concatenate([sb, xs, sa])
    off = np.concatenate([ob, xo, oa])
    after = np.r_[np.zeros(len(sb) + len(xs), bool), np.ones(len(sa), bool)]
    return PeriodInputs(DATE, (DATE.replace(month=1), DATE), (DATE, DATE.replace(month=5)), n, n.copy(), seg, off, after)


def _busy_junction(net, zn) -> str:
    passes, _ = zn.exposure(np.full(len(net), 300.0))
    j = np.flatnonzero(zn.zone_kind == "junction")
    return str(zn.zone_id[j[np.argmax(passes[j])]])


def test_a_treated_zone_that_lost_its_excess_is_a_decrease_and_the_counts_are_the_zones(net, zn):
    rng = np.random.default_rng(8)
    zid = _busy_junction(net, zn)
    inputs = _inputs(net, zn, rng, treated=zid, extra_before=120)
    st = study_works(inputs, net, [zid], zn=zn)
    (r,) = st.zones
    z = int(np.flatnonzero(zn.zone_id == zid)[0])
    ev_zone = attribute_events(zn, inputs.ev_segment, inputs.ev_offset_m)
    assert r.result.events_before == int(((ev_zone == z) & ~inputs.ev_after).sum()) >= 120
    assert r.result.events_after == int(((ev_zone == z) & inputs.ev_after).sum())
    assert r.result.changed and r.result.direction == "decrease" and r.selected_on_record
    assert st.comparison is not None and st.n_comparison_zones > 50
    assert st.period.trend == pytest.approx(1.0, abs=0.15)
    assert "junction of" in r.label
    doc = st.as_dict()
    assert doc["zones"][0]["zone_id"] == zid and doc["programme"]["events_before"] == r.result.events_before


def test_an_untouched_zone_shows_no_change(net, zn):
    rng = np.random.default_rng(9)
    zid = _busy_junction(net, zn)
    st = study_works(_inputs(net, zn, rng, treated=zid, extra_before=0), net, [zid], zn=zn, selected_on_record=False)
    assert not st.zones[0].result.changed and not st.zones[0].selected_on_record


def test_bad_requests_are_clear_errors(net, zn):
    rng = np.random.default_rng(10)
    zid = _busy_junction(net, zn)
    inputs = _inputs(net, zn, rng, treated=zid, extra_before=0)
    with pytest.raises(WorksStudyError, match="unknown zone"):
        study_works(inputs, net, ["J-no-such-node"], zn=zn)
    with pytest.raises(WorksStudyError, match="at least one zone"):
        study_works(inputs, net, [], zn=zn)
    with pytest.raises(WorksStudyError, match="alpha"):
        study_works(inputs, net, [zid], zn=zn, alpha=1.5)
    quiet = PeriodInputs(DATE, inputs.before, inputs.after, inputs.n_before, np.zeros(len(net)), inputs.ev_segment,
                         inputs.ev_offset_m, inputs.ev_after)  # fmt: skip
    with pytest.raises(WorksStudyError, match="no pass"):
        study_works(quiet, net, [zid], zn=zn)
