"""The database layer against both dialects: PostgreSQL 15 (plain) and PGlite + TimescaleDB.

Each test works in its own schema (dropped afterwards), so reruns against a long-running
stack start clean. The central check: every query of pipeline/queries.py and every view
gives the same answer on both databases — before any refresh (real-time aggregation), after
refresh and compression, and after late data.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from pipeline import db, queries, sink
from pipeline.exceptions import MigrationError, SinkError
from schemas.records import HarshEvent, SegmentPass

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DIALECTS = ("plain", "timescale")
UTC = timezone.utc
VIEWS = {
    # view: ORDER BY making the result list deterministic
    "segment_vehicle_daily": "day, segment_id, vehicle",
    "segment_event_daily": "day, segment_id, vehicle",
    "segment_scores": "segment_id",
    "segment_scores_daily": "day, segment_id",
    "harsh_spots": "segment_id",
    "daily_totals": "day",
    "pass_totals": "n_passes",
}
READER_VIEWS = ("segments", "networks", "segment_scores", "segment_scores_daily", "harsh_spots",
                "daily_totals", "pass_totals", "road_alerts")
RAW = ("segment_passes", "harsh_events", "segment_vehicle_daily", "segment_event_daily")


# ------------------------------------------------------------------------------ helpers


def _unique_counts(passes: list[SegmentPass], events: list[HarshEvent]) -> tuple[int, int]:
    p = {(x.vehicle, x.segment_id, x.entry_time) for x in passes}
    e = {(x.vehicle, x.start_time, x.type) for x in events}
    return len(p), len(e)


def snapshot(conn: psycopg.Connection, segment_ids: list[str]) -> dict[str, Any]:
    """Everything a user can read: every query of pipeline.queries and every view."""
    since = datetime(2025, 3, 5, 12, 0, tzinfo=UTC)
    out: dict[str, Any] = {
        "roughest": queries.roughest_segments(conn, limit=100),
        "roughest_top3_min10": queries.roughest_segments(conn, limit=3, min_passes=10),
        "roughest_since": queries.roughest_segments(conn, limit=100, since=since),
        "harshest": queries.harshest_spots(conn, limit=100),
        "harshest_min20": queries.harshest_spots(conn, limit=2, min_passes=20),
        "scores": [queries.segment_score(conn, s) for s in [*segment_ids, "no-such-segment"]],
        "scores_since": [queries.segment_score(conn, s, since=since) for s in segment_ids],
        "pass_count": queries.pass_count(conn),
        "window_fn": conn.execute(
            "SELECT * FROM segment_scores_between(%s, %s) ORDER BY segment_id",
            (datetime(2025, 3, 4, tzinfo=UTC), datetime(2025, 3, 6, tzinfo=UTC)),
        ).fetchall(),
    }
    for view, order in VIEWS.items():
        out[view] = conn.execute(f"SELECT * FROM {view} ORDER BY {order}").fetchall()
    return out


def assert_same(a: Any, b: Any, path: str = "") -> None:
    """Equal, floats to 1e-9 relative (sums in another order differ in the last bits)."""
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
        assert type(a) is type(b), path
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{path}: {len(a)} vs {len(b)} rows\n{a}\n{b}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {a!r} != {b!r}"
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} != {b!r}"


def _columns_of(records: list[Any], spec: sink.TableSpec) -> dict[str, Any]:
    """Records as NumPy columns: datetime64 (UTC) times, NaN for missing floats."""
    cols: dict[str, Any] = {}
    for c in spec.columns:
        values = [getattr(r, c.name) for r in records]
        if c.is_time:
            cols[c.name] = np.array(
                [v.astimezone(UTC).replace(tzinfo=None) for v in values], dtype="datetime64[us]"
            )
        elif c.is_float:
            cols[c.name] = np.array([np.nan if v is None else v for v in values], dtype=float)
        elif c.pgtype.startswith("int") and None not in values:
            cols[c.name] = np.array(values, dtype=np.int64)
        else:
            cols[c.name] = np.array(values, dtype=object)
    return cols


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def loaded_schemas(db_conns, fresh_schema, db_fixture_records):
    """Per dialect: a migrated schema with the SQY network and the fixture data written
    once (no refresh: the TimescaleDB side starts purely real-time)."""
    from roadnet import load_network

    passes, events, _ = db_fixture_records
    net = load_network()
    schemas = {}
    with ExitStack() as stack:
        for name in DIALECTS:
            conn = db_conns[name]
            schemas[name] = stack.enter_context(fresh_schema(conn, "rs_loaded"))
            db.migrate(conn)
            db.load_network(conn, net)
            assert sink.write_results(conn, passes, events) == _unique_counts(passes, events)
        yield schemas


@pytest.fixture
def loaded(db_conns, loaded_schemas):
    """The module's connections, each with its loaded schema first on the search_path."""
    for name, schema in loaded_schemas.items():
        db_conns[name].execute(f'SET search_path = "{schema}", public')
    return db_conns


@pytest.fixture(params=DIALECTS)
def conn_in_fresh_schema(request, db_conns, fresh_schema):
    conn = db_conns[request.param]
    with fresh_schema(conn):
        yield conn


# ------------------------------------------------------------------------- migrations


class TestParseMigration:
    def test_sections_and_autocommit(self):
        text = (
            "CREATE TABLE a (x int);\n"
            "-- @timescale\n"
            "SELECT 1;\n"
            "-- @autocommit\n"
            "CREATE MATERIALIZED VIEW IF NOT EXISTS v AS SELECT 1;\n"
            "SELECT 2;\n"
            "-- @plain\n"
            "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT 'a;b' $$;\n"
            "-- @all\n"
            "SELECT 'it''s; -- not a comment', \"we;ird\" /* ; */ ;\n"
            "SELECT E'back\\'slash;';"
        )
        got = [(s.dialect, s.autocommit, s.line) for s in db.parse_migration(text)]
        assert got == [
            ("all", False, 1), ("timescale", False, 3), ("timescale", True, 5),
            ("timescale", False, 6), ("plain", False, 8), ("all", False, 10), ("all", False, 11),
        ]
        assert db.parse_migration(text)[4].sql.endswith("$$ SELECT 'a;b' $$")

    @pytest.mark.parametrize(
        ("text", "match"),
        [
            ("-- @timescal\nSELECT 1;", "unknown directive @timescal"),
            ("SELECT 1\n-- @plain\n;", "inside a statement"),
            ("SELECT 1;\n-- @autocommit\n", "@autocommit at the end"),
            ("SELECT 'open;", "unterminated string"),
            ("SELECT $x$ body;", "unterminated dollar quote"),
        ],
    )
    def test_errors(self, text, match):
        with pytest.raises(MigrationError, match=match):
            db.parse_migration(text)


@pytest.mark.parametrize("name", DIALECTS)
def test_migrations_apply_once(name, db_conns, fresh_schema):
    conn = db_conns[name]
    files = db.read_migrations()
    with fresh_schema(conn):
        applied = db.migrate(conn)
        assert [a.version for a in applied] == [m.version for m in files]
        assert {a.dialect for a in applied} == {name}
        assert db.migrate(conn) == []  # idempotent
        rows = db.applied_migrations(conn)
        assert [(r.version, r.name, r.checksum) for r in rows] == [
            (m.version, m.name, m.checksum) for m in files
        ]
        assert conn.autocommit is True  # restored


@pytest.mark.parametrize("name", DIALECTS)
def test_changed_missing_and_failing_migrations(name, db_conns, fresh_schema, tmp_path):
    conn = db_conns[name]
    sqldir = tmp_path / "sql"
    shutil.copytree(db.SQL_DIR, sqldir)
    with fresh_schema(conn):
        db.migrate(conn, directory=sqldir)
        # a file edited after it was applied
        f = sqldir / "004_scores.sql"
        original = f.read_text()
        f.write_text(original + "\n-- an innocent edit\n")
        with pytest.raises(MigrationError, match=r"004_scores\.sql changed after it was applied"):
            db.migrate(conn, directory=sqldir)
        f.write_text(original)
        # a file removed after it was applied
        moved = (sqldir / "006_reader_role.sql").rename(tmp_path / "006_reader_role.sql")
        with pytest.raises(MigrationError, match=r"006_reader_role is applied but its file is"):
            db.migrate(conn, directory=sqldir)
        moved.rename(sqldir / "006_reader_role.sql")
        # a new file numbered before the last applied one
        (sqldir / "000_early.sql").write_text("SELECT 1;\n")
        with pytest.raises(MigrationError, match="sort before the last applied one"):
            db.migrate(conn, directory=sqldir)
        (sqldir / "000_early.sql").unlink()
        # a failing migration: rolled back as a whole, error names file and line
        (sqldir / "900_broken.sql").write_text(
            "CREATE TABLE half_done (x int);\n\nSELECT no_such_function();\n"
        )
        with pytest.raises(MigrationError, match=r"900_broken\.sql:3: 42883"):
            db.migrate(conn, directory=sqldir)
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        assert max(a.version for a in db.applied_migrations(conn)) == max(m.version for m in db.read_migrations())
        # fixed: applied alone
        (sqldir / "900_broken.sql").write_text("CREATE TABLE half_done (x int);\n")
        assert [a.version for a in db.migrate(conn, directory=sqldir)] == [900]
        # and the dialect cannot change under an applied schema
        other = "plain" if name == "timescale" else "timescale"
        with pytest.raises(MigrationError, match=f"applied for dialect '{name}', now '{other}'"):
            db.migrate(conn, directory=sqldir, dialect_override=other)


def test_timescale_objects_and_jobs(db_conns, fresh_schema, db_fixture_records):
    conn = db_conns["timescale"]
    passes, events, _ = db_fixture_records
    with fresh_schema(conn) as schema:
        db.migrate(conn)
        assert db.dialect(conn) == "timescale"
        hyper = conn.execute(
            "SELECT h.hypertable_name, h.compression_enabled, d.column_name, d.time_interval"
            " FROM timescaledb_information.hypertables h"
            " JOIN timescaledb_information.dimensions d USING (hypertable_schema, hypertable_name)"
            " WHERE h.hypertable_schema = %s ORDER BY 1",
            (schema,),
        ).fetchall()
        assert hyper == [
            ("harsh_events", True, "start_time", timedelta(days=7)),
            ("segment_passes", True, "entry_time", timedelta(days=7)),
        ]
        caggs = conn.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
            " WHERE view_schema = %s ORDER BY 1",
            (schema,),
        ).fetchall()
        assert caggs == [("segment_event_daily", False), ("segment_vehicle_daily", False)]
        jobs = conn.execute(
            "SELECT proc_name, count(*) FROM timescaledb_information.jobs"
            " WHERE hypertable_schema = %s GROUP BY 1 ORDER BY 1",
            (schema,),
        ).fetchall()
        assert jobs == [
            ("policy_compression", 2),  # raw hypertables, after 7 days
            ("policy_refresh_continuous_aggregate", 2),
            ("policy_retention", 4),  # raw hypertables and continuous aggregates
        ]
        drop_after = conn.execute(
            "SELECT DISTINCT config->>'drop_after' FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_retention' AND hypertable_schema = %s",
            (schema,),
        ).fetchall()
        assert drop_after == [("400 days",)]
        sink.write_results(conn, passes, events)
        ran = db.run_policy_jobs(conn)  # refresh, then compression (no background workers)
        assert len(ran) == 4
        compressed = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks"
            " WHERE hypertable_schema = %s AND is_compressed",
            (schema,),
        ).fetchone()[0]
        assert compressed >= 2
        # ON CONFLICT DO NOTHING on compressed chunks: a replay is still a no-op
        assert sink.write_results(conn, passes, events) == (0, 0)
        assert queries.pass_count(conn).n_passes == _unique_counts(passes, events)[0]


@pytest.mark.parametrize("name", DIALECTS)
def test_score_confidence_migration_keeps_a_running_database(name, db_conns, fresh_schema, db_fixture_records, tmp_path):
    """010 on a database that already holds (and, on TimescaleDB, has materialised) data: the
    scores read the same, gain a confidence equal to agents.scores', and the reader's grants
    and the aggregate's jobs are back."""
    import shutil

    from agents.scores import segment_scores
    from roadnet import load_network

    passes, events, _ = db_fixture_records
    old = tmp_path / "sql"
    old.mkdir()
    for f in sorted(db.SQL_DIR.glob("*.sql")):
        if f.name < "010":
            shutil.copy(f, old / f.name)
    conn = db_conns[name]
    cols = "segment_id, n_passes, n_vehicles, n_vehicles_iri, iri_m_per_km, iri_p25_m_per_km, iri_p75_m_per_km, level"
    with fresh_schema(conn):
        db.migrate(conn, directory=old)
        db.load_network(conn, load_network())
        sink.write_results(conn, passes, events)
        db.refresh(conn)  # TimescaleDB: the data is materialised in the old aggregate
        before = conn.execute(f"SELECT {cols} FROM segment_scores ORDER BY segment_id").fetchall()
        daily = conn.execute("SELECT n_passes FROM segment_scores_daily ORDER BY day, segment_id").fetchall()
        assert [m.version for m in db.migrate(conn)] == [10]
        assert conn.execute(f"SELECT {cols} FROM segment_scores ORDER BY segment_id").fetchall() == before
        db.refresh(conn)
        assert conn.execute(f"SELECT {cols} FROM segment_scores ORDER BY segment_id").fetchall() == before
        assert conn.execute("SELECT n_passes FROM segment_scores_daily ORDER BY day, segment_id").fetchall() == daily
        uniq = list({(p.vehicle, p.segment_id, p.entry_time): p for p in passes}.values())
        want = {s.segment_id: s.confidence for s in segment_scores(uniq, events)}
        got = dict(conn.execute("SELECT segment_id, confidence FROM segment_scores").fetchall())
        assert got.keys() == want.keys() and any(v is not None for v in got.values())
        for seg, c in want.items():
            assert (c is None and got[seg] is None) or got[seg] == pytest.approx(c, rel=1e-9)
        if name == "timescale":
            jobs = conn.execute(
                "SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_schema = current_schema()"
                " AND hypertable_name = 'segment_vehicle_daily' ORDER BY 1"
            ).fetchall()
            assert jobs == [("policy_refresh_continuous_aggregate",), ("policy_retention",)]
        conn.execute("SET ROLE roadsense_reader")
        try:
            for view in ("segment_scores", "segment_scores_daily", "harsh_spots", "daily_totals", "pass_totals"):
                conn.execute(f"SELECT * FROM {view} LIMIT 1").fetchall()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM segment_vehicle_daily LIMIT 1")
        finally:
            conn.execute("RESET ROLE")


def test_plain_objects(db_conns, fresh_schema):
    conn = db_conns["plain"]
    with fresh_schema(conn):
        db.migrate(conn)
        assert db.dialect(conn) == "plain"
        kinds = dict(conn.execute(
            "SELECT c.relname, c.relkind::text FROM pg_class c"
            " WHERE c.relnamespace = current_schema()::regnamespace"
            " AND c.relname = ANY(%s)",
            (["segment_passes", "harsh_events", *VIEWS],),
        ).fetchall())
        assert kinds == {"segment_passes": "r", "harsh_events": "r", **{v: "v" for v in VIEWS}}
        assert db.refresh(conn) == [] and db.run_policy_jobs(conn) == []


def test_day_bucket_matches_time_bucket(db_conns):
    """time_bucket('1 day', t) == date_bin('1 day', t, 2000-01-01 UTC), in UTC, any session zone."""
    conn = db_conns["timescale"]
    conn.execute("SET TimeZone = 'Europe/Paris'")
    try:
        bad = conn.execute(
            "SELECT count(*) FROM generate_series(TIMESTAMPTZ '2000-01-01 00:00+00',"
            " TIMESTAMPTZ '2031-01-01 00:00+00', INTERVAL '6 hours 59 minutes 59 seconds') AS t"
            " WHERE time_bucket(INTERVAL '1 day', t)"
            "    <> date_bin(INTERVAL '1 day', t, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
        ).fetchone()[0]
    finally:
        conn.execute("SET TimeZone = 'UTC'")
    assert bad == 0


# ------------------------------------------------------------------------------ writing


@pytest.mark.parametrize("name", DIALECTS)
def test_write_results_is_idempotent(name, loaded, db_fixture_records):
    conn = loaded[name]
    passes, events, _ = db_fixture_records
    assert sink.write_results(conn, passes, events) == (0, 0)
    assert sink.write_results(conn, [], []) == (0, 0)
    n_p, n_e = _unique_counts(passes, events)
    assert conn.execute("SELECT count(*) FROM segment_passes").fetchone()[0] == n_p
    assert conn.execute("SELECT count(*) FROM harsh_events").fetchone()[0] == n_e


@pytest.mark.parametrize("name", DIALECTS)
def test_failed_batch_writes_nothing(name, loaded, db_fixture_records):
    conn = loaded[name]
    good = db_fixture_records[0][0].model_copy(update={"vehicle": "rollbackvehicle1"})
    bad = HarshEvent.model_construct(**{
        **db_fixture_records[1][0].model_dump(), "vehicle": "rollbackvehicle1", "type": "hovercraft",
    })
    with pytest.raises(SinkError, match=r"1 passes and 1 harsh events not written.*check") as err:
        sink.write_results(conn, [good], [bad])
    assert err.value.sqlstate == "23514" and not err.value.retriable
    assert conn.execute(
        "SELECT count(*) FROM segment_passes WHERE vehicle = 'rollbackvehicle1'"
    ).fetchone() == (0,)
    # the sink keeps its buffer on failure, so the batch can be retried
    ps = sink.PassSink(conn)
    ps.add([good], [bad])
    with pytest.raises(SinkError):
        ps.flush()
    assert ps.pending == (1, 1)


@pytest.mark.parametrize("name", DIALECTS)
def test_write_columns_equals_write_results(name, db_conns, fresh_schema, db_fixture_records):
    conn = db_conns[name]
    passes, events, _ = db_fixture_records
    order = {
        "segment_passes": "vehicle, segment_id, entry_time",
        "harsh_events": "vehicle, start_time, type",
    }
    with fresh_schema(conn):
        db.migrate(conn)
        got = sink.write_columns(
            conn, _columns_of(passes, sink.PASS_TABLE), _columns_of(events, sink.EVENT_TABLE)
        )
        assert got == _unique_counts(passes, events)
        from_columns = {t: conn.execute(f"SELECT * FROM {t} ORDER BY {o}").fetchall()
                        for t, o in order.items()}
        conn.execute("TRUNCATE segment_passes, harsh_events")
        assert sink.write_results(conn, passes, events) == got
        from_records = {t: conn.execute(f"SELECT * FROM {t} ORDER BY {o}").fetchall()
                        for t, o in order.items()}
        assert_same(from_columns, from_records)
        assert any(r[10] is None for r in from_records["segment_passes"])  # NULL IRIs kept


@pytest.mark.parametrize("name", DIALECTS)
def test_load_network_upserts_and_prunes(name, db_conns, fresh_schema):
    from roadnet import load_network

    conn = db_conns[name]
    net = load_network()
    with fresh_schema(conn):
        db.migrate(conn)
        assert db.load_network(conn, net) == len(net)
        assert db.load_network(conn, net) == len(net)
        counts = conn.execute("SELECT count(*), count(ref), count(osm_way_id) FROM segments")
        assert counts.fetchone() == (
            len(net), sum(r is not None for r in net.ref), int((net.osm_way_id >= 0).sum()),
        )
        keep = slice(0, 100)
        arrays = {f.name: getattr(net, f.name)[keep] for f in dataclasses.fields(net)
                  if isinstance(getattr(net, f.name), np.ndarray) and f.name != "node_id"}
        small = dataclasses.replace(net, **arrays)
        assert db.load_network(conn, small) == 100
        assert conn.execute("SELECT count(*) FROM segments").fetchone() == (100,)
        row = conn.execute(
            "SELECT n.attribution, n.n_segments, s.mid_lat, s.mid_lon, s.geojson::json->>'type'"
            " FROM segments s JOIN networks n ON n.name = s.network WHERE s.segment_id = %s",
            (str(net.segment_id[0]),),
        ).fetchone()
        assert row[0].startswith("© OpenStreetMap contributors") and row[1] == 100
        assert 48.7 < row[2] < 48.9 and 1.9 < row[3] < 2.1 and row[4] == "LineString"


@pytest.mark.parametrize("name", DIALECTS)
def test_prune_older_than(name, db_conns, fresh_schema, db_fixture_records):
    conn = db_conns[name]
    passes, events, _ = db_fixture_records
    now = datetime.now(UTC)
    shift = now - timedelta(days=300) - passes[0].entry_time  # some rows < 400 days old
    recent = [p.model_copy(update={"entry_time": p.entry_time + shift,
                                   "exit_time": p.exit_time + shift}) for p in passes[:5]]
    with fresh_schema(conn):
        db.migrate(conn)
        sink.write_results(conn, passes + recent, events)
        n_old = _unique_counts(passes, events)
        assert conn.execute("SELECT prune_older_than(INTERVAL '400 days')").fetchone() == (
            n_old[0] + n_old[1],
        )
        assert conn.execute("SELECT count(*) FROM segment_passes").fetchone() == (5,)
        with pytest.raises(psycopg.errors.RaiseException, match="shorter than 1 day"):
            conn.execute("SELECT prune_older_than(INTERVAL '1 hour')")


# -------------------------------------------------------------- same answers on both


def test_same_answers_realtime(loaded, db_fixture_records):
    """No refresh yet: TimescaleDB answers from real-time aggregation only."""
    ids = db_fixture_records[2]
    a, b = snapshot(loaded["plain"], ids), snapshot(loaded["timescale"], ids)
    assert_same(a, b)
    # the fixture exercises what it should
    assert len(a["roughest"]) == 6 and len(a["harshest"]) == 5
    assert a["scores"][-1] is None and a["scores"][-2].label == "segment unknown-segment-xyz"
    assert {s.level for s in a["roughest"]} == {"good", "fair", "poor"}
    with_ref, without_ref = a["scores"][0], a["scores"][2]
    assert with_ref.ref and with_ref.label.startswith(f"{with_ref.ref} ({with_ref.highway}) at 48.")
    assert without_ref.label.startswith(f"OSM way {without_ref.osm_way_id} (")
    assert a["pass_count"].n_passes == _unique_counts(*db_fixture_records[:2])[0]


def test_same_answers_after_refresh_and_compression(loaded, db_fixture_records):
    ids = db_fixture_records[2]
    ts = loaded["timescale"]
    assert db.refresh(ts) == list(db.CONTINUOUS_AGGREGATES)
    assert_same(snapshot(loaded["plain"], ids), snapshot(ts, ids))
    db.run_policy_jobs(ts)  # compresses the (old) fixture chunks
    assert ts.execute(
        "SELECT count(*) FROM timescaledb_information.chunks"
        " WHERE hypertable_schema = current_schema() AND is_compressed"
    ).fetchone()[0] >= 2
    assert_same(snapshot(loaded["plain"], ids), snapshot(ts, ids))


def test_late_data_needs_refresh_on_timescale(loaded, db_fixture_records):
    """Rows older than the materialisation watermark appear after db.refresh() (documented)."""
    ids = db_fixture_records[2]
    ts, pg = loaded["timescale"], loaded["plain"]
    db.refresh(ts)
    late = [p.model_copy(update={"vehicle": "latevehicle01"}) for p in db_fixture_records[0][:10]]
    for conn in (pg, ts):
        assert sink.write_results(conn, late, []) == (10, 0)
    assert queries.pass_count(ts).n_passes == queries.pass_count(pg).n_passes - 10
    db.refresh(ts)
    assert_same(snapshot(pg, ids), snapshot(ts, ids))


# ------------------------------------------------------------------------ read-only role


@pytest.mark.parametrize("name", DIALECTS)
def test_reader_role(name, loaded, db_fixture_records):
    conn = loaded[name]
    ids = db_fixture_records[2]
    as_owner = snapshot(conn, ids)
    conn.execute("SET ROLE roadsense_reader")
    try:
        for view in READER_VIEWS:
            conn.execute(f"SELECT * FROM {view} LIMIT 1").fetchall()
        q = snapshot_queries_only(conn, ids)
        for table in RAW:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {table} LIMIT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT prune_older_than(INTERVAL '400 days')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM road_alerts")
    finally:
        conn.execute("RESET ROLE")
    assert_same(q, {k: as_owner[k] for k in q})


def snapshot_queries_only(conn: psycopg.Connection, ids: list[str]) -> dict[str, Any]:
    since = datetime(2025, 3, 5, 12, 0, tzinfo=UTC)
    return {
        "roughest": queries.roughest_segments(conn, limit=100),
        "roughest_since": queries.roughest_segments(conn, limit=100, since=since),
        "harshest": queries.harshest_spots(conn, limit=100),
        "scores": [queries.segment_score(conn, s) for s in [*ids, "no-such-segment"]],
        "pass_count": queries.pass_count(conn),
    }


def test_query_argument_errors(loaded):
    conn = loaded["plain"]
    with pytest.raises(ValueError, match="limit=0"):
        queries.roughest_segments(conn, limit=0)
    with pytest.raises(ValueError, match="min_passes=-1"):
        queries.harshest_spots(conn, min_passes=-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        queries.roughest_segments(conn, since=datetime(2025, 3, 1))


def test_sql_dir_is_the_repository_one():
    assert db.SQL_DIR == Path(__file__).resolve().parents[2] / "sql"


# --------------------------------------------------------------- fleet calibration (009)


@pytest.mark.parametrize("name", DIALECTS)
def test_calibration_job_and_calibrated_scores_mirror_agents(name, db_conns, fresh_schema, db_fixture_records):
    """The calibration job stores the gains agents.scores.calibrate computes from the same
    passes, and segment_scores then equals agents.scores.segment_scores with them."""
    from agents.scores import calibrate, segment_scores, vehicle_segment_means
    from pipeline.calibration import run_calibration, write_references
    from roadnet import load_network

    passes, events, ids = db_fixture_records
    # give the five fixture vehicles distinct biases so the gains are not all 1
    bias = {f"pseudo{v:04d}abcdef": 1.0 + 0.15 * v for v in range(5)}
    passes = [p.model_copy(update={"iri_m_per_km": None if p.iri_m_per_km is None else p.iri_m_per_km * bias[p.vehicle]})
              for p in passes]  # fmt: skip
    conn = db_conns[name]
    with fresh_schema(conn):
        db.migrate(conn)
        db.load_network(conn, load_network())
        sink.write_results(conn, passes, events)
        uniq = list({(p.vehicle, p.segment_id, p.entry_time): p for p in passes}.values())

        def db_scores():
            return {r[0]: r[1:] for r in conn.execute(
                "SELECT segment_id, n_passes, n_vehicles, iri_m_per_km, iri_p25_m_per_km, iri_p75_m_per_km, level, confidence"
                " FROM segment_scores").fetchall()}  # fmt: skip

        def check(cal):
            got = db_scores()
            want = {s.segment_id: s for s in segment_scores(uniq, events, cal)}
            assert set(got) == set(want)
            for seg, s in want.items():
                n_passes, n_veh, iri, p25, p75, level, conf = got[seg]
                assert (n_passes, n_veh, level) == (s.n_passes, s.n_vehicles, s.level)
                for a, b in ((iri, s.iri_m_per_km), (p25, s.iri_p25), (p75, s.iri_p75), (conf, s.confidence)):
                    assert (a is None and b is None) or a == pytest.approx(b, rel=1e-9, abs=1e-9)

        before = db_scores()
        check(None)  # no run yet: every gain is 1
        run = run_calibration(conn, min_references=3)
        want = calibrate(*vehicle_segment_means(uniq), min_references=3)
        assert run.calibration.anchor == "fleet_median" and want.gains
        assert run.calibration.gains == pytest.approx(want.gains, rel=1e-9)
        stored = dict(conn.execute("SELECT vehicle, gain FROM vehicle_gains").fetchall())
        assert stored == pytest.approx(want.gains, rel=1e-9)
        # the most biased vehicle reads highest (the fixture's IRIs are noisy: order only)
        g = want.gains
        assert max(g, key=g.get) == "pseudo0004abcdef" and min(g.values()) < 1.0 < max(g.values())
        check(want)
        assert db_scores() != before
        # anchored on references: the scale follows them, the ratios stay
        sc = {s.segment_id: s for s in segment_scores(uniq, events, want) if s.iri_m_per_km is not None}
        refs = {s: 2.0 * sc[s].iri_m_per_km for s in list(sc)[:3]}
        write_references(conn, [(s, v, None, "test") for s, v in refs.items()])
        run2 = run_calibration(conn, min_references=3)
        assert run2.run_id > run.run_id and run2.calibration.anchor == "reference"
        want2 = calibrate(*vehicle_segment_means(uniq), reference_iri=refs, min_references=3)
        assert run2.calibration.gains == pytest.approx(want2.gains, rel=1e-9)
        check(want2)
        assert conn.execute("SELECT default_vehicle_gain()").fetchone()[0] == pytest.approx(want2.default_gain)
        # a vehicle unknown to the calibration uses the default gain
        new = [p.model_copy(update={"vehicle": "newvehicle0001"}) for p in uniq[:5]]
        sink.write_results(conn, new, [])
        got = db_scores()
        want_new = {s.segment_id: s for s in segment_scores(uniq + new, events, want2)}
        for seg, s in want_new.items():
            assert got[seg][2] == pytest.approx(s.iri_m_per_km, rel=1e-9, abs=1e-9) or s.iri_m_per_km is None
        # the reader sees the runs and the references, never the per-vehicle gains
        conn.execute("SET ROLE roadsense_reader")
        try:
            conn.execute("SELECT * FROM calibration_runs").fetchall()
            conn.execute("SELECT * FROM reference_segments").fetchall()
            conn.execute("SELECT * FROM segment_scores_daily LIMIT 1").fetchall()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM vehicle_gains")
        finally:
            conn.execute("RESET ROLE")
