"""The Grafana dashboard's SQL runs on both databases as the read-only role.

Every ``rawSql`` of deploy/grafana/dashboards/roadsense.json is extracted, its Grafana
macros and variables substituted, and run as ``roadsense_reader`` on plain PostgreSQL and on
PGlite + TimescaleDB: over the last 30 days (no fixture data: must just run) and over March
2025 (the fixture: must return rows, the same on both databases).
"""

from __future__ import annotations

import json
import re
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import db, sink

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "roadsense.json"
DATASOURCE = REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "roadsense.yml"
ATTRIBUTION = "© OpenStreetMap contributors (ODbL)"
VARIABLES = {"min_passes": "1"}
WINDOWS = {
    "last_30_days": ("now() - interval '30 days'", "now()"),
    "fixture_month": ("'2025-03-01T00:00:00Z'", "'2025-04-01T00:00:00Z'"),
}


def _panels(node: Any) -> list[dict[str, Any]]:
    """All panels, including those nested in rows."""
    out = []
    for p in node.get("panels", []):
        out.append(p)
        out.extend(_panels(p))
    return out


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title / refId, rawSql) for every SQL target of the dashboard."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (f"{p.get('title') or p['id']}/{t.get('refId', '?')}", t["rawSql"])
        for p in _panels(dash)
        for t in p.get("targets", [])
        if t.get("rawSql")
    ]


def substitute(raw: str, window: tuple[str, str]) -> str:
    """Expand the Grafana macros and dashboard variables used by the dashboard."""
    start, end = window
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {start} AND {end}", raw)
    sql = sql.replace("$__timeFrom()", start).replace("$__timeTo()", end)
    for name, value in VARIABLES.items():
        sql = sql.replace(f"${{{name}}}", value).replace(f"${name}", value)
    leftover = re.findall(r"\$\{?_*\w+", sql)
    assert not leftover, f"unsupported Grafana macro/variable {leftover} in:\n{raw}"
    return sql


QUERIES = dashboard_queries()


def test_dashboard_shape():
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert ATTRIBUTION in dash["description"]
    types = {p["type"] for p in _panels(dash)}
    assert {"table", "timeseries", "geomap"} <= types
    assert any("road_alerts" in sql for _, sql in dashboard_queries())  # the potholes
    geomap = next(p for p in _panels(dash) if p["type"] == "geomap")
    assert ATTRIBUTION in geomap["description"]
    assert len(QUERIES) >= 5
    uids = {t["datasource"]["uid"] for p in _panels(dash) for t in p.get("targets", [])}
    ds = DATASOURCE.read_text(encoding="utf-8")
    assert uids == {re.search(r"uid:\s*(\S+)", ds).group(1)}
    assert "timescaledb: true" in ds and "user: roadsense_grafana" in ds


@pytest.fixture(scope="module")
def grafana_schemas(db_conns, fresh_schema, db_fixture_records):
    """Both dialects: migrated schema with the network and the fixture data, refreshed."""
    from roadnet import load_network

    from pipeline.alerts_sink import write_alerts
    from schemas.records import RoadAlert

    passes, events, segment_ids = db_fixture_records
    net = load_network()
    # potholes last seen in March 2025, one on a segment the network does not have
    t0 = datetime(2025, 3, 10, tzinfo=UTC)
    alerts = [RoadAlert(alert_id=f"pothole-grafana{k:08d}", segment_id=seg, position_m=10.0 + k, lat_deg=48.8,
                        lon_deg=1.95, confidence=0.9 - 0.1 * k, n_vehicles=3 + k, n_impacts=4 + k,
                        first_seen=t0, last_seen=t0 + timedelta(days=k))
              for k, seg in enumerate([segment_ids[0], segment_ids[2], segment_ids[-1]])]  # fmt: skip
    schemas = {}
    with ExitStack() as stack:
        for name, conn in db_conns.items():
            schemas[name] = stack.enter_context(fresh_schema(conn, "rs_grafana"))
            db.migrate(conn)
            db.load_network(conn, net)
            sink.write_results(conn, passes, events)
            write_alerts(conn, alerts)
            db.refresh(conn)
        yield schemas


def _run_as_reader(conn, schema: str, sql: str) -> list[tuple[Any, ...]]:
    conn.execute(f'SET search_path = "{schema}", public')
    conn.execute("SET ROLE roadsense_reader")
    try:
        return conn.execute(sql.encode()).fetchall()
    finally:
        conn.execute("RESET ROLE")


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize(("where", "raw"), QUERIES, ids=[q[0] for q in QUERIES])
def test_dashboard_sql(where, raw, window, db_conns, grafana_schemas):
    sql = substitute(raw, WINDOWS[window])
    results = {
        name: _run_as_reader(db_conns[name], schema, sql)
        for name, schema in grafana_schemas.items()
    }
    if window == "fixture_month":
        assert results["plain"], f"{where}: no rows over the fixture month"
    plain, ts = results["plain"], results["timescale"]
    assert len(plain) == len(ts), where
    for a, b in zip(plain, ts):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            if isinstance(x, float) and isinstance(y, float):
                assert x == pytest.approx(y, rel=1e-9, abs=1e-12), where
            else:
                assert x == y, where
