"""Write a simulated fleet to a directory: traces, ground truth and a manifest.

Layout::

    DIR/traces.csv | traces.csv.gz | traces.parquet   the trace-file contract
    DIR/truth_passes.csv     vehicle_id, trip, seq, segment_id, entry_time, exit_time,
                             entry_t_s, exit_t_s, entry_offset_m, exit_offset_m
    DIR/truth_segments.csv   segment_id, iri_m_per_km (true ASTM IRI; empty for segments no
                             vehicle drove), iso_class (ISO 8608 A-E), gd0_m3, n_passes
    DIR/truth_features.csv   segment_id, offset_m, kind (pothole | bump | rail), height_m
                             (negative: depth), length_m, detail (speed_bump, speed_cushion,
                             rail_crossing, pothole), for the driven segments
    DIR/truth_events.csv     vehicle_id, type, start_time, start_t_s, peak_t_s, duration_s,
                             peak_mps2, speed_kmh, segment_id, offset_m, lat_deg, lon_deg
    DIR/truth_vehicles.csv   vehicle_id, true powertrain, reported signals, driver parameters,
                             vertical-dynamics family and sensor gain error
    DIR/manifest.json        seed, parameters, network, attribution, files

Times: ``*_time`` ISO 8601 UTC (ms), ``*_t_s`` seconds since the epoch.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from schemas.tracefile import write_traces
from simulator.fleet import Fleet

__all__ = ["write_fleet", "read_truth", "ODBL_ATTRIBUTION"]

ODBL_ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0"
MANIFEST_VERSION = 1


def _iso(t_s: np.ndarray) -> pa.Array:
    ms = pa.array(np.round(np.asarray(t_s, float) * 1e3).astype(np.int64), pa.timestamp("ms", tz="UTC"))
    return pc.binary_join_element_wise(pc.strftime(ms, format="%Y-%m-%dT%H:%M:%S"), pa.scalar("Z"), "")


def _write_csv(path: Path, cols: dict[str, object]) -> None:
    pa_csv.write_csv(pa.table({k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in cols.items()}), str(path))


def write_fleet(
    fleet: Fleet,
    out_dir: str | Path,
    *,
    format: Literal["csv", "csv.gz", "parquet"] = "csv",
    time_format: Literal["epoch", "iso"] = "epoch",
) -> Path:
    """Write ``fleet`` to ``out_dir`` (created); returns the path of the trace file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if format not in ("csv", "csv.gz", "parquet"):
        raise ValueError(f"{format=} must be 'csv', 'csv.gz' or 'parquet'")
    traces = write_traces(out / f"traces.{format}", fleet.traces, time_format=time_format)
    tr = fleet.truth
    p = tr.passes
    # Vehicle ids contain no separator characters; float columns are rounded for readability.
    _write_csv(
        out / "truth_passes.csv",
        {
            "vehicle_id": p["vehicle_id"].astype(str),
            "trip": p["trip"],
            "seq": p["seq"],
            "segment_id": p["segment_id"].astype(str),
            "entry_time": _iso(p["entry_t_s"]),
            "exit_time": _iso(p["exit_t_s"]),
            "entry_t_s": np.round(p["entry_t_s"], 3),
            "exit_t_s": np.round(p["exit_t_s"], 3),
            "entry_offset_m": np.round(p["entry_offset_m"], 2),
            "exit_offset_m": np.round(p["exit_offset_m"], 2),
        },
    )
    seg_cols: dict[str, object] = {
        "segment_id": tr.segment_id.astype(str),
        "iri_m_per_km": pa.array(tr.iri_m_per_km, pa.float64(), from_pandas=True),  # NaN -> empty
    }
    if len(tr.iso_class) == len(tr.segment_id):
        seg_cols["iso_class"] = pa.array(tr.iso_class.astype(str), pa.string())
        seg_cols["gd0_m3"] = np.round(tr.gd0_m3, 9)
        seg_cols["n_passes"] = np.bincount(p["segment"], minlength=len(tr.segment_id))
    _write_csv(out / "truth_segments.csv", seg_cols)
    f = tr.features
    if f:
        _write_csv(
            out / "truth_features.csv",
            {
                "segment_id": pa.array(f["segment_id"].astype(str), pa.string()),
                "offset_m": np.round(f["offset_m"], 3),
                "kind": pa.array(f["kind"].astype(str), pa.string()),
                "height_m": np.round(f["height_m"], 4),
                "length_m": np.round(f["length_m"], 3),
                "detail": pa.array(f["detail"].astype(str), pa.string()),
            },
        )
    e = tr.events
    _write_csv(
        out / "truth_events.csv",
        {
            "vehicle_id": pa.array(e["vehicle_id"].astype(str), pa.string()),
            "type": pa.array(e["type"].astype(str), pa.string()),
            "start_time": _iso(e["start_t_s"]),
            "start_t_s": np.round(e["start_t_s"], 3),
            "peak_t_s": np.round(e["peak_t_s"], 3),
            "duration_s": np.round(e["duration_s"], 3),
            "peak_mps2": np.round(e["peak_mps2"], 3),
            "speed_kmh": np.round(e["speed_kmh"], 2),
            "segment_id": pa.array(e["segment_id"].astype(str), pa.string()),
            "offset_m": np.round(e["offset_m"], 2),
            "lat_deg": np.round(e["lat_deg"], 7),
            "lon_deg": np.round(e["lon_deg"], 7),
        },
    )
    vids = list(tr.vehicles)
    rows = [{**asdict(tr.vehicles[v]), **asdict(tr.drivers[v])} for v in vids]
    _write_csv(
        out / "truth_vehicles.csv",
        {
            "vehicle_id": pa.array(vids, pa.string()),
            "true_powertrain": pa.array([r["true_powertrain"] for r in rows], pa.string()),
            "reported_powertrain": pa.array([r["powertrain"] for r in rows], pa.string()),
            "model_year": pa.array([r["model_year"] for r in rows], pa.int16()),
            "sends_brake": pa.array([r["sends_brake"] for r in rows], pa.bool_()),
            "soc_start_pct": pa.array([r["soc_start_pct"] for r in rows], pa.float64()),
            "speed_factor": pa.array([round(r["speed_factor"], 4) for r in rows]),
            "accel_mps2": pa.array([round(r["accel_mps2"], 4) for r in rows]),
            "decel_mps2": pa.array([round(r["decel_mps2"], 4) for r in rows]),
            "lat_mps2": pa.array([round(r["lat_mps2"], 4) for r in rows]),
            "dynamics_family": pa.array([tr.dynamics[v].family if v in tr.dynamics else None for v in vids], pa.string()),
            "gain_error": pa.array([round(tr.dynamics[v].gain_error, 5) if v in tr.dynamics else None for v in vids], pa.float64()),
        },
    )
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "generator": "roadsense simulator",
        "seed": fleet.params.get("seed"),
        "parameters": fleet.params,
        "network": {"name": fleet.network_name, "attribution": ODBL_ATTRIBUTION,
                    "source_attribution": fleet.attribution},
        "files": {
            "traces": traces.name,
            "passes": "truth_passes.csv",
            "segments": "truth_segments.csv",
            "events": "truth_events.csv",
            "vehicles": "truth_vehicles.csv",
            **({"features": "truth_features.csv"} if f else {}),
        },
        "counts": {
            "vehicles": len(fleet.traces),
            "samples": int(sum(len(t) for t in fleet.traces.values())),
            "fixes": int(sum(len(t.fix_t_s) for t in fleet.traces.values())),
            "passes": int(len(p["segment_id"])),
            "events": int(len(e["type"])),
        },
    }  # fmt: skip
    (out / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return traces


def read_truth(out_dir: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """The truth tables of a fleet directory as columns: ``passes``, ``segments``, ``events``,
    ``vehicles`` and, when written, ``features``."""
    out = Path(out_dir)
    result = {}
    keys = ["passes", "segments", "events", "vehicles"]
    if (out / "truth_features.csv").exists():
        keys.append("features")
    for key in keys:
        conv = pa_csv.ConvertOptions(
            column_types={"segment_id": pa.string(), "vehicle_id": pa.string(), "entry_time": pa.string(),
                          "exit_time": pa.string(), "start_time": pa.string(), "iso_class": pa.string(),
                          "kind": pa.string(), "detail": pa.string()}
        )  # fmt: skip
        table = pa_csv.read_csv(out / f"truth_{key}.csv", convert_options=conv)
        result[key] = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
    return result
