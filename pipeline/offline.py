"""``roadsense score``: the streaming computation run offline on trace files.

Reads trace files, cuts each vehicle's samples into the same frames the replay sends
(``schemas.tracefile.frames_of``), and runs the same ``FrameHandler`` the stage-1 agent
runs, with the vehicle state kept in a dict instead of a Faust table. Then the fleet
calibration job's computation (``agents.scores.calibrate`` on the per-(vehicle, segment)
mean IRIs, anchored on ``reference_iri`` when given, as ``roadsense calibrate`` does on the
database), and segment scores aggregated exactly as the database's ``segment_scores`` view
does with those gains (``agents.scores``). So this is the reference the streaming path
(workers, then the calibration job) must agree with.

Outputs in ``--out``: ``segment_scores.geojson`` and ``.csv``, ``passes.csv``,
``vehicle_gains.csv`` (pseudonym, gain; plus the default gain and the anchor),
``events.geojson`` and ``.csv``, ``alerts.geojson`` and ``.csv`` (confirmed potholes, the
stage-2 code run offline); the GeoJSON files carry the ODbL attribution.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.passes import PassParams
from agents.scores import Calibration, SegmentScore, calibrate, segment_scores, vehicle_segment_means
from pipeline.pseudonym import Pseudonymiser
from pipeline.stage1 import FrameHandler
from pipeline.stage2 import Stage2Params, handle_records
from roadnet import RoadNetwork
from schemas.frame import encode_frame
from schemas.records import HarshEvent, PassImpact, RoadAlert, SegmentPass
from schemas.tracefile import frames_of, read_traces

__all__ = ["ScoreRun", "score_traces", "write_outputs"]


@dataclass(frozen=True)
class ScoreRun:
    passes: list[SegmentPass]
    events: list[HarshEvent]
    scores: list[SegmentScore]
    n_frames: int
    n_vehicles: int
    dead_letters: list[tuple[str, str]]
    impacts: list[PassImpact]
    alerts: list[RoadAlert]
    calibration: Calibration


def score_traces(
    paths: Sequence[str | Path],
    net: RoadNetwork,
    *,
    pseudonymise: Pseudonymiser,
    frame_s: float = 2.0,
    params: PassParams = PassParams(),
    progress: bool = False,
    reference_iri: dict[str, float] | None = None,
    coverage: bool = False,
) -> ScoreRun:
    """Passes, events and calibrated segment scores of trace files (no Kafka, no database).

    ``reference_iri``: segment id -> measured IRI (m/km), the calibration's anchor (the
    database's ``reference_segments``); without it the fleet's median gain is 1.
    ``coverage``: stage 2 also gets the passes (the workers' ``stage2_coverage``).
    """
    traces = read_traces(paths)
    handler = FrameHandler(net=net, pseudonymise=pseudonymise, params=params)
    states: dict[str, bytes] = {}
    passes: list[SegmentPass] = []
    events: list[HarshEvent] = []
    dead: list[tuple[str, str]] = []
    impacts: list[PassImpact] = []
    n_frames = 0
    items = sorted(traces.items())
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="vehicles", unit="veh")
    for vid, trace in items:
        for frame in frames_of(trace, vid, frame_s=frame_s):
            n_frames += 1
            # Through the wire format, exactly as the worker sees it.
            out = handler.handle(encode_frame(frame), states.get)
            if out.dead_letter is not None:
                dead.append(out.dead_letter)
                continue
            if out.state is not None and out.state_key is not None:
                states[out.state_key] = out.state
                handler.confirm(out.state_key, out.seq)  # collected below: nothing to re-send
            passes.extend(out.passes)
            events.extend(out.events)
            impacts.extend(out.impacts)
    cal = calibrate(*vehicle_segment_means(passes), reference_iri=reference_iri)
    scores = segment_scores(passes, events, cal)
    return ScoreRun(passes, events, scores, n_frames, len(traces), dead, impacts,
                    confirm_potholes(impacts, net, passes if coverage else ()), cal)  # fmt: skip


def confirm_potholes(
    impacts: Sequence[PassImpact],
    net: RoadNetwork | None,
    passes: Sequence[SegmentPass] = (),
    *,
    params: Stage2Params = Stage2Params(),
) -> list[RoadAlert]:
    """Stage 2 offline: each segment's passes and impacts one at a time in time order, as
    the stream delivers them (a pass at its entry time, so before its own impacts, as stage
    1 publishes it first); the latest revision of every alert."""
    recs: dict[str, list[tuple]] = {}
    for q in passes:
        recs.setdefault(q.segment_id, []).append((q.entry_time, 0, q.vehicle, q.exit_time, q))
    for imp in impacts:
        recs.setdefault(imp.segment_id, []).append((imp.time, 1, imp.vehicle, imp.time, imp))
    latest: dict[str, RoadAlert] = {}
    for seg in sorted(recs):
        st = None
        for _, kind, _, now, rec in sorted(recs[seg], key=lambda r: r[:3]):
            st, alerts = handle_records(st, [rec] if kind else [], [] if kind else [rec], now, net=net, params=params)
            for a in alerts:
                latest[a.alert_id] = a
    return [latest[k] for k in sorted(latest)]


def write_outputs(run: ScoreRun, net: RoadNetwork, out_dir: str | Path) -> list[Path]:
    """Write scores, passes and events as GeoJSON and CSV; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    score_rows = [s.as_row() for s in run.scores]
    written.append(_csv(out / "segment_scores.csv", score_rows, SegmentScore.columns()))
    feats = []
    for s, row in zip(run.scores, score_rows):
        i = net.index_of(s.segment_id)
        geom = json.loads(_geojson_of(net, i))
        feats.append({"type": "Feature", "geometry": geom, "properties": row})
    written.append(_geojson(out / "segment_scores.geojson", feats, net))

    cal = run.calibration
    gain_rows = [{"vehicle": v, "gain": g, "n_segments": cal.n_segments.get(v, 0)} for v, g in sorted(cal.gains.items())]
    gain_rows.append({"vehicle": "*default*", "gain": cal.default_gain, "n_segments": "", "anchor": cal.anchor})
    written.append(_csv(out / "vehicle_gains.csv", gain_rows, ["vehicle", "gain", "n_segments", "anchor"]))
    pass_rows = [p.model_dump(mode="json") for p in run.passes]
    written.append(_csv(out / "passes.csv", pass_rows, list(SegmentPass.model_fields)))
    ev_rows = [e.model_dump(mode="json") for e in run.events]
    written.append(_csv(out / "events.csv", ev_rows, list(HarshEvent.model_fields)))
    ev_feats = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [r["lon_deg"], r["lat_deg"]]}, "properties": r}
        for r in ev_rows
    ]
    written.append(_geojson(out / "events.geojson", ev_feats, net))
    al_rows = [a.model_dump(mode="json") for a in run.alerts]
    written.append(_csv(out / "alerts.csv", al_rows, list(RoadAlert.model_fields)))
    al_feats = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [r["lon_deg"], r["lat_deg"]]}, "properties": r}
        for r in al_rows
    ]
    written.append(_geojson(out / "alerts.geojson", al_feats, net))
    return written


def _geojson_of(net: RoadNetwork, i: int) -> str:
    import shapely

    return shapely.to_geojson(net.geom_wgs84[i])


def _csv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def _geojson(path: Path, features: list[dict], net: RoadNetwork) -> Path:
    doc = {
        "type": "FeatureCollection",
        "attribution": net.attribution,
        "license_note": "Road geometry © OpenStreetMap contributors, ODbL 1.0",
        "features": features,
    }
    path.write_text(json.dumps(doc, default=_jsonable), encoding="utf-8")
    return path


def _jsonable(x: object) -> object:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x).__name__)
