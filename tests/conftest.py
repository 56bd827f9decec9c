"""Shared fixtures. `stack` starts the local stack once per session (idempotent)."""

from __future__ import annotations

import warnings

import pytest

# kafka-python 3.0.12 calls the deprecated importlib.resources.read_text while importing its
# protocol classes; pyproject.toml turns warnings into errors, so import it once here with
# that warning silenced (later imports are cached and warn no more).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401


@pytest.fixture(scope="session")
def stack():
    """Connection info of the running local stack (Kafka, PostgreSQL, TimescaleDB tier).

    Starts what is not running (`pipeline.stack.up(timescale_tier=True)`) and leaves it
    running afterwards, so reruns against a running stack take well under a second.
    Stop it with `python -m pipeline.stack down`. The Kafka topics the tests created are
    deleted at the end of the session.
    """
    from pipeline.stack import up
    from pipeline.topics import delete_topics, list_topics

    info = up(timescale_tier=True)
    # the topics the tests make (tagged "it." names, "rs-…" apps' changelogs): thousands of
    # them slowed a long-lived development broker
    mine = ("it.", "rs-")
    before = set(list_topics(info.kafka_bootstrap, mine))
    yield info
    delete_topics(info.kafka_bootstrap, set(list_topics(info.kafka_bootstrap, mine)) - before)


# --------------------------------------------------------------------------------------
# Databases (pipeline/db.py): both dialects, one fresh schema per test or module.
# --------------------------------------------------------------------------------------
# ROADSENSE_TEST_PG_DSN / ROADSENSE_TEST_PGLITE_DSN point the DB tests at other servers
# (then the `stack` fixture is not started). PGlite serves ONE client at a time, and a
# client that gives up while queued crashes it: `db_conns` holds the only PGlite
# connection of a test module; tests must not open another one while it is open.

DB_DIALECTS = ("plain", "timescale")


@pytest.fixture(scope="session")
def db_dsns(request) -> dict[str, str]:
    """``{"plain": <PostgreSQL 15 DSN>, "timescale": <PGlite+TimescaleDB DSN>}``."""
    import os

    pg = os.environ.get("ROADSENSE_TEST_PG_DSN")
    lite = os.environ.get("ROADSENSE_TEST_PGLITE_DSN")
    if not (pg and lite):
        info = request.getfixturevalue("stack")
        pg, lite = pg or info.pg_dsn, lite or info.pglite_dsn
    return {"plain": pg, "timescale": lite}


@pytest.fixture(scope="module")
def db_conns(db_dsns):
    """One autocommit connection per dialect, for the whole test module."""
    from pipeline import db

    conns = {}
    try:
        for name in DB_DIALECTS:
            conns[name] = db.connect(
                db_dsns[name], autocommit=True, timeout_s=30, search_path="public"
            )
        yield conns
    finally:
        for conn in conns.values():
            conn.close()


@pytest.fixture(scope="session")
def fresh_schema():
    """Factory: ``with fresh_schema(conn) as name:`` a new empty schema first on the
    search_path; dropped afterwards (role and search_path reset), so reruns start clean."""
    import contextlib
    import uuid

    @contextlib.contextmanager
    def make(conn, prefix: str = "rs_test"):
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        conn.execute(f'CREATE SCHEMA "{name}"')
        conn.execute(f'SET search_path = "{name}", public')
        try:
            yield name
        finally:
            if conn.info.transaction_status != 0:  # not IDLE
                conn.rollback()
            conn.execute("RESET ROLE")
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')
            conn.execute("SET search_path = public")  # PGlite resets it to pg_catalog

    return make


@pytest.fixture(scope="session")
def db_fixture_records():
    """Deterministic passes and harsh events: ``(passes, events, segment_ids)``.

    5 segments of the SQY Plaisir network (with and without a road ref) plus one id absent
    from the network, 5 vehicles, 5 UTC days in March 2025, NULL IRIs, passes near UTC
    midnight given in a +02:00 offset, all three event types, one segment without events,
    and duplicated rows (a replay inside the batch).
    """
    from datetime import datetime, timedelta, timezone

    import numpy as np

    from roadnet import load_network
    from schemas.records import HarshEvent, SegmentPass

    net = load_network()
    has_ref = np.flatnonzero(np.array([r is not None for r in net.ref]))
    no_ref = np.flatnonzero(np.array([r is None for r in net.ref]))
    picks = [int(has_ref[0]), int(has_ref[len(has_ref) // 2]), int(no_ref[0]), int(no_ref[100]),
             int(no_ref[200])]
    segment_ids = [str(net.segment_id[i]) for i in picks] + ["unknown-segment-xyz"]
    t0 = datetime(2025, 3, 3, tzinfo=timezone.utc)
    cest = timezone(timedelta(hours=2))
    types = ("harsh_brake", "harsh_accel", "harsh_corner")
    passes, events = [], []
    for v in range(5):
        vehicle = f"pseudo{v:04d}abcdef"
        for s, seg in enumerate(segment_ids):
            if (v + s) % 5 == 4:
                continue  # not every vehicle drives every segment
            for day in range(5):
                for k in range(1 + (v + day) % 3):
                    # k=0 at 23:59:30 UTC (given as 01:59:30 the next day in +02:00)
                    if k == 0 and (v + s + day) % 4 == 0:
                        late = t0 + timedelta(days=day, hours=23, minutes=59, seconds=30)
                        entry = late.astimezone(cest)
                    else:
                        entry = t0 + timedelta(days=day, hours=6 + 3 * k + v, minutes=7 * s)
                    iri = None if (v * 7 + s * 3 + day + k) % 6 == 0 else \
                        round(0.8 + 1.3 * s + 0.37 * v + 0.11 * day + 0.05 * k, 3)
                    n_harsh = (v + s + k) % 3 if s != 4 else 0
                    passes.append(SegmentPass(
                        vehicle=vehicle, segment_id=seg, entry_time=entry,
                        exit_time=entry + timedelta(seconds=12 + s),
                        entry_offset_m=0.0, exit_offset_m=80.0 + s, covered_m=80.0 + s + 0.5 * k,
                        mean_speed_kmh=30.0 + 2.5 * v + s + 0.25 * day, n_samples=1200 + k,
                        fs_hz=100.0, iri_m_per_km=iri,
                        roughness_rms_mps2=None if iri is None else iri / 3.0,
                        max_vertical_mps2=1.0 + 0.1 * (v + s + day + k),
                        n_harsh_events=n_harsh, confidence=0.5 + 0.1 * (k % 3),
                        powertrain=("ELECTRIC", "COMBUSTION", None)[v % 3],
                        model_year=None if v == 2 else 2015 + v,
                    ))
                    for j in range(n_harsh):
                        events.append(HarshEvent(
                            vehicle=vehicle, type=types[(v + j + day) % 3],
                            start_time=entry + timedelta(seconds=2 + 3 * j),
                            duration_s=0.8 + 0.1 * j, peak_mps2=-4.5 if j % 2 == 0 else 3.9,
                            speed_kmh=35.0 + v, segment_id=seg, offset_m=10.0 + 20 * j,
                            lat_deg=48.8 + 0.001 * s, lon_deg=1.95 + 0.001 * s,
                        ))
    passes += passes[:7]   # replayed rows inside the batch
    events += events[:3]
    return passes, events, segment_ids
