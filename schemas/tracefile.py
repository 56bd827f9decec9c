"""Read and write trace files (the external contract of ARCHITECTURE.md), and cut traces into frames.

A trace file holds one row per inertial sample, with the COVESA VSS column names of
``schemas.trace.COL``, in CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``). Rows with
an empty latitude and longitude are samples without a new GPS fix. Rows need not be sorted,
neither across vehicles nor in time.

Everything is column-wise (pyarrow, NumPy): no loop per row. Every breach of the contract
raises ``SchemaError`` naming the file, the column and the first bad data rows (row 1 is the
first row after the CSV header, or the first row of a Parquet file).

Rules beyond the column table of the contract:

- ``timestamp``: seconds since the epoch (a number) or ISO 8601 with a zone offset
  (``2024-03-01T08:00:00.010Z``); a time without an offset is refused, as it may be local.
- Per vehicle, timestamps are unique; the sample rate inferred from them must lie in
  5-200 Hz (``infer_rate_hz``).
- Heading and horizontal accuracy describe a fix: on rows without latitude/longitude they
  are not used.
- ``Vehicle.ADAS.ABS.IsEngaged`` is filled on every row of a vehicle or on none.
- ``Vehicle.Powertrain.Type`` and ``Vehicle.VehicleIdentification.Year`` are properties of
  the vehicle: one value per vehicle (empty rows allowed).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from schemas._errors import SchemaError
from schemas.frame import FRAME_SCHEMA_VERSION, Frame
from schemas.trace import _RATE_TOLERANCE, NOMINAL_RATES_HZ, snap_rate_hz
from schemas.trace import COL, REQUIRED_COLUMNS

__all__ = [
    "MAX_RATE_HZ",
    "MIN_RATE_HZ",
    "NOMINAL_RATES_HZ",
    "TRIP_GAP_S",
    "TRACE_SUFFIXES",
    "VehicleTrace",
    "frame_windows",
    "frames_of",
    "iter_frames",
    "infer_rate_hz",
    "read_traces",
    "trace_files",
    "write_traces",
]

#: A gap between two samples of one vehicle longer than this ends a trip (seconds).
TRIP_GAP_S = 300.0
MIN_RATE_HZ = 5.0
MAX_RATE_HZ = 200.0
TRACE_SUFFIXES = (".csv", ".csv.gz", ".parquet")
POWERTRAIN_TYPES = ("COMBUSTION", "HYBRID", "ELECTRIC")
_MAX_ROWS_SHOWN = 5

_FLOAT_COLUMNS = (
    COL.speed, COL.accel_long, COL.accel_lat, COL.accel_vert, COL.lat, COL.lon,
    COL.heading, COL.accuracy, COL.brake_pedal, COL.soc, COL.model_year,
)  # fmt: skip
_STRING_COLUMNS = (COL.vehicle_id, COL.timestamp, COL.powertrain, COL.abs_engaged)


# ----------------------------------------------------------------------------- the trace
@dataclass(frozen=True, eq=False)
class VehicleTrace:
    """One vehicle's samples, sorted by time, as NumPy arrays.

    Attributes
    ----------
    t_s : (n,) float64, sample times, seconds since the epoch (UTC), strictly increasing
    speed_kmh, accel_long_mps2, accel_lat_mps2, accel_vert_mps2 : (n,) float64
        km/h; m/s² on ISO 8855 axes (forward +, left +, up +; vertical may include gravity)
    fix_t_s, fix_lat_deg, fix_lon_deg : (k,) float64, the GPS fixes (a subset of ``t_s``)
    fix_heading_deg, fix_accuracy_m : (k,) float64 or None; NaN where a fix has none
    brake_pedal_pct : (n,) float64 or None; NaN where a sample has none
    abs_engaged : (n,) bool or None
    powertrain : "COMBUSTION" | "HYBRID" | "ELECTRIC" | None
    soc_pct : (n,) float64 or None; NaN where a sample has none
    model_year : int or None
    """

    t_s: np.ndarray
    speed_kmh: np.ndarray
    accel_long_mps2: np.ndarray
    accel_lat_mps2: np.ndarray
    accel_vert_mps2: np.ndarray
    fix_t_s: np.ndarray
    fix_lat_deg: np.ndarray
    fix_lon_deg: np.ndarray
    fix_heading_deg: np.ndarray | None = None
    fix_accuracy_m: np.ndarray | None = None
    brake_pedal_pct: np.ndarray | None = None
    abs_engaged: np.ndarray | None = None
    powertrain: str | None = None
    soc_pct: np.ndarray | None = None
    model_year: int | None = None

    def __len__(self) -> int:
        return len(self.t_s)

    @property
    def rate_hz(self) -> float:
        """Sample rate inferred from the timestamps (``infer_rate_hz``)."""
        return infer_rate_hz(self.t_s)

    @property
    def duration_s(self) -> float:
        return float(self.t_s[-1] - self.t_s[0]) if len(self.t_s) else 0.0

    @property
    def fix_index(self) -> np.ndarray:
        """Index into ``t_s`` of each fix (fixes are on sample rows)."""
        return np.searchsorted(self.t_s, self.fix_t_s)


def infer_rate_hz(t_s: Any) -> float:
    """Sample rate (Hz) from sample times: 1 / median interval, snapped to a nominal rate.

    The rate snaps to the nearest of ``NOMINAL_RATES_HZ`` when within 5 % of it.

    Raises
    ------
    SchemaError
        Fewer than two samples, times not increasing, or a rate outside 5-200 Hz (±5 %).

    Examples
    --------
    >>> infer_rate_hz(1.7e9 + np.arange(500) * 0.0101)
    100.0
    >>> infer_rate_hz(np.arange(10) / 30.0)
    30.0
    """
    t = np.asarray(t_s, dtype=np.float64)
    if t.ndim != 1 or len(t) < 2:
        raise SchemaError(f"cannot infer a sample rate from {t.size} sample(s); need at least 2")
    dt = np.diff(t)
    if not (dt > 0).all():
        raise SchemaError("cannot infer a sample rate: timestamps are not strictly increasing")
    rate = 1.0 / float(np.median(dt))
    snapped = snap_rate_hz(rate)
    if snapped != rate:
        return snapped
    if not (MIN_RATE_HZ * (1 - _RATE_TOLERANCE) <= rate <= MAX_RATE_HZ * (1 + _RATE_TOLERANCE)):
        raise SchemaError(
            f"sample rate {rate:.3g} Hz is outside the accepted {MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz"
        )
    return round(rate, 3)


# ------------------------------------------------------------------------------ writing
def write_traces(
    path: str | Path,
    vehicles: Mapping[str, VehicleTrace],
    *,
    time_format: Literal["epoch", "iso"] = "epoch",
) -> Path:
    """Write vehicle traces to one trace file (CSV, CSV+gzip or Parquet, by the suffix).

    Rows are written vehicle by vehicle, in the order of ``vehicles``, sorted by time.
    Values are written as given (round them first for smaller CSV files). An optional
    column is written when at least one vehicle has it; other vehicles leave it empty.

    Parameters
    ----------
    path : file to write; its suffix (``.csv``, ``.csv.gz``, ``.parquet``) picks the format
    vehicles : vehicle id -> trace
    time_format : ``"epoch"`` (float seconds) or ``"iso"`` (ISO 8601 UTC, microseconds, ``Z``)

    Returns
    -------
    The path written.

    Raises
    ------
    ValueError
        Unknown suffix or time format, no vehicles, or a fix time that is not a sample time.
    """
    path = Path(path)
    kind = _kind_of(path)
    if time_format not in ("epoch", "iso"):
        raise ValueError(f"{time_format=} must be 'epoch' or 'iso'")
    if not vehicles:
        raise ValueError("no vehicles to write")
    table = _table_of(vehicles, time_format=time_format)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        pq.write_table(table, path, compression="zstd", row_group_size=1 << 20)
    elif kind == "csv.gz":
        # Python's gzip: a fast level, and mtime 0 so that the same traces give the same bytes.
        with open(path, "wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=3, mtime=0
        ) as gz:
            pa_csv.write_csv(table, pa.PythonFile(gz, mode="w"))
    else:
        pa_csv.write_csv(table, str(path))
    return path


def _table_of(vehicles: Mapping[str, VehicleTrace], *, time_format: str) -> pa.Table:
    ids = list(vehicles)
    traces = [vehicles[v] for v in ids]
    counts = np.array([len(tr) for tr in traces], dtype=np.int64)
    owner = np.repeat(np.arange(len(ids), dtype=np.int32), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def cat(name: str) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(tr, name), np.float64) for tr in traces])

    t = cat("t_s")
    cols: dict[str, pa.Array] = {
        COL.vehicle_id: pc.take(pa.array(ids, pa.string()), pa.array(owner)),
    }
    if time_format == "iso":
        us = pa.array(np.round(t * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC"))
        iso = pc.strftime(us, format="%Y-%m-%dT%H:%M:%S")
        cols[COL.timestamp] = pc.binary_join_element_wise(iso, pa.scalar("Z"), "")
    else:
        cols[COL.timestamp] = pa.array(t)
    cols[COL.speed] = pa.array(cat("speed_kmh"))
    cols[COL.accel_long] = pa.array(cat("accel_long_mps2"))
    cols[COL.accel_lat] = pa.array(cat("accel_lat_mps2"))
    cols[COL.accel_vert] = pa.array(cat("accel_vert_mps2"))

    # Fix columns: values on the sample row of each fix, empty elsewhere.
    n = int(counts.sum())
    rows = []
    for tr, s0 in zip(traces, starts):
        idx = np.searchsorted(tr.t_s, tr.fix_t_s)
        ok = (idx < len(tr.t_s)) & (tr.t_s[np.minimum(idx, len(tr.t_s) - 1)] == tr.fix_t_s)
        if not ok.all():
            raise ValueError("a fix time is not one of the sample times of its vehicle")
        rows.append(idx + s0)
    fix_rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)

    def on_fix_rows(name: str) -> pa.Array | None:
        if all(getattr(tr, name) is None for tr in traces):
            return None
        full = np.full(n, np.nan)
        full[fix_rows] = np.concatenate(
            [
                np.full(len(tr.fix_t_s), np.nan) if getattr(tr, name) is None else getattr(tr, name)
                for tr in traces
            ]
        )
        return pa.array(full, mask=np.isnan(full))

    cols[COL.lat] = on_fix_rows("fix_lat_deg")
    cols[COL.lon] = on_fix_rows("fix_lon_deg")
    optional = {
        COL.heading: on_fix_rows("fix_heading_deg"),
        COL.accuracy: on_fix_rows("fix_accuracy_m"),
    }
    for col, name in ((COL.brake_pedal, "brake_pedal_pct"), (COL.soc, "soc_pct")):
        if any(getattr(tr, name) is not None for tr in traces):
            full = np.concatenate(
                [
                    np.full(len(tr), np.nan) if getattr(tr, name) is None else getattr(tr, name)
                    for tr in traces
                ]
            )
            optional[col] = pa.array(full, mask=np.isnan(full))
    if any(tr.abs_engaged is not None for tr in traces):
        vals = np.concatenate(
            [np.zeros(len(tr), bool) if tr.abs_engaged is None else tr.abs_engaged for tr in traces]
        )
        missing = np.repeat(np.array([tr.abs_engaged is None for tr in traces]), counts)
        optional[COL.abs_engaged] = pa.array(vals, mask=missing)
    if any(tr.powertrain is not None for tr in traces):
        optional[COL.powertrain] = pc.take(
            pa.array([tr.powertrain for tr in traces], pa.string()), pa.array(owner)
        )
    if any(tr.model_year is not None for tr in traces):
        optional[COL.model_year] = pc.take(
            pa.array([tr.model_year for tr in traces], pa.int16()), pa.array(owner)
        )
    cols.update({k: v for k, v in optional.items() if v is not None})
    return pa.table(cols)


# ------------------------------------------------------------------------------ reading
def trace_files(path: str | Path) -> list[Path]:
    """The trace files of a directory (names starting with ``traces``), or ``[path]``."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    found = sorted(
        p for p in path.iterdir() if p.name.startswith("traces") and _kind_of(p, strict=False)
    )
    if not found:
        raise SchemaError(f"{path}: no trace files (traces*.csv, .csv.gz, .parquet) in it")
    return found


def read_traces(paths: str | Path | Iterable[str | Path]) -> dict[str, VehicleTrace]:
    """Read and validate trace files; one ``VehicleTrace`` per vehicle, sorted by time.

    Parameters
    ----------
    paths : a file, a directory (its ``traces*`` files) or several of them. One vehicle may
        span several files.

    Returns
    -------
    vehicle id -> trace, in order of vehicle id.

    Raises
    ------
    SchemaError
        Unreadable file, missing required column, a value that is not a number or not a
        time, NaN or infinite value where one is required, negative speed, latitude or
        longitude out of range, a latitude without a longitude (or the reverse), duplicate
        timestamps of one vehicle, a sample rate outside 5-200 Hz. The message names the
        file, the column and the first bad rows.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = [f for p in paths for f in trace_files(p)]
    if not files:
        raise SchemaError("no trace files given")
    parts = [_read_one(f) for f in files]

    # Vehicle codes shared across files.
    names = sorted({v for part in parts for v in part["__ids__"]})
    code_of = {v: i for i, v in enumerate(names)}
    vcode = np.concatenate(
        [np.asarray([code_of[v] for v in part["__ids__"]], np.int64)[part["__vidx__"]] for part in parts]
    )
    file_no = np.concatenate([np.full(len(part["__vidx__"]), k) for k, part in enumerate(parts)])
    row_no = np.concatenate([np.arange(len(part["__vidx__"])) for part in parts])
    keys = sorted({k for part in parts for k in part if not k.startswith("__")})

    def column(part: dict[str, Any], key: str) -> np.ndarray:
        if key in part:
            return part[key]
        n = len(part["__vidx__"])  # a column another file has: empty here
        return np.full(n, -1, np.int64) if key in ("abs", "powertrain") else np.full(n, np.nan)

    data = {key: np.concatenate([column(part, key) for part in parts]) for key in keys}
    t = data["t_s"]
    order = np.lexsort((t, vcode))
    vs, ts = vcode[order], t[order]
    dup = np.flatnonzero((np.diff(vs) == 0) & (np.diff(ts) == 0))
    if len(dup):
        a, b = order[dup[0]], order[dup[0] + 1]
        raise SchemaError(
            f"column {COL.timestamp!r}: duplicate timestamp for vehicle {names[vs[dup[0]]]!r}"
            f" at {files[file_no[a]]} row {row_no[a] + 1} and {files[file_no[b]]} row {row_no[b] + 1}"
            + (f" (+{len(dup) - 1} more duplicates)" if len(dup) > 1 else "")
        )
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(vs)) + 1, [len(vs)]])
    out: dict[str, VehicleTrace] = {}
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        idx = order[lo:hi]
        vid = names[vs[lo]]
        where = f"{files[file_no[idx[0]]]}" + (" (and others)" if len(set(file_no[idx])) > 1 else "")
        out[vid] = _vehicle_trace(vid, {k: v[idx] for k, v in data.items()}, where, row_no[idx])
    return out


def _vehicle_trace(vid: str, d: dict[str, np.ndarray], where: str, rows: np.ndarray) -> VehicleTrace:
    try:
        infer_rate_hz(d["t_s"])
    except SchemaError as exc:
        raise SchemaError(f"{where}: column {COL.timestamp!r}: vehicle {vid!r}: {exc}") from None
    fix = ~np.isnan(d["lat"])
    abs_eng = None
    if "abs" in d:
        known = d["abs"] >= 0
        if known.any():
            if not known.all():
                bad = rows[~known]
                raise SchemaError(
                    f"{where}: column {COL.abs_engaged!r}: vehicle {vid!r} has it empty at row(s)"
                    f" {_rows(np.sort(bad))}; fill it on every row of a vehicle or on none"
                )
            abs_eng = d["abs"] == 1

    def per_vehicle(key: str, col: str) -> Any:
        if key not in d:
            return None
        vals = d[key]
        vals = vals[~np.isnan(vals)] if vals.dtype.kind == "f" else vals[vals >= 0]
        uniq = np.unique(vals)
        if len(uniq) > 1:
            raise SchemaError(
                f"{where}: column {col!r}: vehicle {vid!r} has several values {uniq[:5].tolist()};"
                " it is a property of the vehicle"
            )
        return uniq[0] if len(uniq) else None

    def opt(key: str, mask: np.ndarray | None = None) -> np.ndarray | None:
        if key not in d:
            return None
        vals = d[key] if mask is None else d[key][mask]
        return None if np.isnan(vals).all() else vals

    pt = per_vehicle("powertrain", COL.powertrain)
    year = per_vehicle("model_year", COL.model_year)
    return VehicleTrace(
        t_s=d["t_s"],
        speed_kmh=d["speed"],
        accel_long_mps2=d["ax"],
        accel_lat_mps2=d["ay"],
        accel_vert_mps2=d["az"],
        fix_t_s=d["t_s"][fix],
        fix_lat_deg=d["lat"][fix],
        fix_lon_deg=d["lon"][fix],
        fix_heading_deg=opt("heading", fix) if "heading" in d else None,
        fix_accuracy_m=opt("accuracy", fix) if "accuracy" in d else None,
        brake_pedal_pct=opt("brake"),
        abs_engaged=abs_eng,
        powertrain=None if pt is None else POWERTRAIN_TYPES[int(pt)],
        soc_pct=opt("soc"),
        model_year=None if year is None else int(year),
    )


def _kind_of(path: Path, *, strict: bool = True) -> str | None:
    name = path.name.lower()
    for suffix in (".csv.gz", ".csv", ".parquet"):
        if name.endswith(suffix):
            return suffix[1:]
    if strict:
        raise ValueError(f"{path}: unknown trace-file suffix; use one of {', '.join(TRACE_SUFFIXES)}")
    return None


def _read_table(path: Path) -> pa.Table:
    try:
        kind = _kind_of(path)
    except ValueError as exc:
        raise SchemaError(str(exc)) from None
    if not path.is_file():
        raise SchemaError(f"{path}: trace file not found")
    try:
        if kind == "parquet":
            return pq.read_table(path)
        read = pa_csv.ReadOptions(block_size=1 << 24)
        types: dict[str, pa.DataType] = {c: pa.string() for c in _STRING_COLUMNS}
        types.update({c: pa.float64() for c in _FLOAT_COLUMNS})
        conv = pa_csv.ConvertOptions(column_types=types, strings_can_be_null=True, null_values=[""])
        try:
            return pa_csv.read_csv(path, read_options=read, convert_options=conv)
        except pa.ArrowInvalid:
            # A value is not a number: read text and let the converters find the row.
            types = {c: pa.string() for c in _STRING_COLUMNS + _FLOAT_COLUMNS}
            conv = pa_csv.ConvertOptions(column_types=types, strings_can_be_null=True, null_values=[""])
            return pa_csv.read_csv(path, read_options=read, convert_options=conv)
    except (pa.ArrowException, OSError) as exc:
        raise SchemaError(f"{path}: cannot read as {kind}: {exc}") from None


def _rows(idx: np.ndarray) -> str:
    """'3, 7, 9' (1-based data rows) for the first bad rows."""
    shown = ", ".join(str(int(i) + 1) for i in idx[:_MAX_ROWS_SHOWN])
    more = len(idx) - _MAX_ROWS_SHOWN
    return shown + (f" (+{more} more)" if more > 0 else "")


class _Col:
    """Converters of one file's columns to NumPy, raising SchemaError with file and rows."""

    def __init__(self, path: Path, table: pa.Table) -> None:
        self.path = path
        self.table = table

    def fail(self, col: str, what: str, bad: np.ndarray) -> SchemaError:
        return SchemaError(f"{self.path}: column {col!r}: {what} at row(s) {_rows(np.flatnonzero(bad) if bad.dtype == bool else bad)}")

    def arr(self, col: str) -> pa.Array:
        return self.table.column(col).combine_chunks()

    def _first_failures(self, a: pa.Array, cast: Any) -> np.ndarray:
        """Indices of the first values that ``cast`` refuses (bisection, O(n log n))."""
        bad: list[int] = []
        start = 0
        while len(bad) < _MAX_ROWS_SHOWN and start < len(a):
            try:
                cast(a.slice(start))
                break
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
                pass
            lo, hi = start, len(a)  # a[start:hi] fails; find the least hi that fails
            while hi - lo > 1:
                mid = (lo + hi) // 2
                try:
                    cast(a.slice(start, mid - start))
                    lo = mid
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
                    hi = mid
            bad.append(hi - 1)
            start = hi
        return np.asarray(bad, np.int64)

    def floats(self, col: str, *, required: bool, what: str = "a number") -> np.ndarray:
        """float64 values; empty -> NaN (refused when required); text must be numbers."""
        a = self.arr(col)
        if pa.types.is_string(a.type) or pa.types.is_large_string(a.type):
            def cast(x: pa.Array) -> pa.Array:
                return pc.cast(pc.utf8_trim_whitespace(x), pa.float64())

            try:
                a = cast(a)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise self.fail(col, f"not {what}", self._first_failures(a, cast)) from None
        elif pa.types.is_boolean(a.type) or not (
            pa.types.is_integer(a.type) or pa.types.is_floating(a.type) or pa.types.is_null(a.type)
        ):
            raise SchemaError(f"{self.path}: column {col!r}: type {a.type} is not {what}")
        else:
            a = pc.cast(a, pa.float64())
        nulls = a.is_null().to_numpy(zero_copy_only=False)
        x = pc.fill_null(a, np.nan).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        if required:
            if nulls.any():
                raise self.fail(col, "empty value", nulls)
            if not np.isfinite(x).all():
                raise self.fail(col, "NaN or infinite value", ~np.isfinite(x))
        elif np.isinf(x).any():
            raise self.fail(col, "infinite value", np.isinf(x))
        return x

    def timestamps(self) -> np.ndarray:
        """Epoch seconds from numbers, Arrow timestamps or ISO 8601 text with an offset."""
        col = COL.timestamp
        a = self.arr(col)
        if pa.types.is_timestamp(a.type):
            if a.type.tz is None:
                raise SchemaError(f"{self.path}: column {col!r}: timestamps without a time zone; store UTC")
            us = pc.cast(a, pa.timestamp("us", tz=a.type.tz))
            nulls = a.is_null().to_numpy(zero_copy_only=False)
            if nulls.any():
                raise self.fail(col, "empty value", nulls)
            return pc.cast(us, pa.int64()).to_numpy().astype(np.float64) / 1e6
        if not (pa.types.is_string(a.type) or pa.types.is_large_string(a.type)):
            return self.floats(col, required=True, what="a time")
        nulls = a.is_null().to_numpy(zero_copy_only=False)
        if nulls.any():
            raise self.fail(col, "empty value", nulls)
        a = pc.utf8_trim_whitespace(a)
        try:
            x = pc.cast(a, pa.float64()).to_numpy()
        except pa.ArrowInvalid:
            def cast(v: pa.Array) -> pa.Array:
                return pc.cast(v, pa.timestamp("us", tz="UTC"))

            try:
                us = cast(a)
            except pa.ArrowInvalid:
                raise self.fail(
                    col,
                    "not a time (seconds since the epoch, or ISO 8601 with a zone offset such as"
                    " 2024-03-01T08:00:00.010Z)",
                    self._first_failures(a, cast),
                ) from None
            return pc.cast(us, pa.int64()).to_numpy().astype(np.float64) / 1e6
        if not np.isfinite(x).all():
            raise self.fail(col, "NaN or infinite value", ~np.isfinite(x))
        return x

    def strings(self, col: str) -> pa.Array:
        a = self.arr(col)
        if not (pa.types.is_string(a.type) or pa.types.is_large_string(a.type)):
            a = pc.cast(a, pa.string())
        return a


def _read_one(path: Path) -> dict[str, Any]:
    table = _read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise SchemaError(f"{path}: missing required column(s) {missing}")
    c = _Col(path, table)
    n = table.num_rows
    if n == 0:
        raise SchemaError(f"{path}: no rows")

    vid = c.strings(COL.vehicle_id)
    empty = pc.or_(vid.is_null(), pc.equal(pc.utf8_length(vid), 0)).to_numpy(zero_copy_only=False)
    if empty.any():
        raise c.fail(COL.vehicle_id, "empty vehicle id", empty)
    enc = pc.dictionary_encode(vid)
    out: dict[str, Any] = {
        "__ids__": enc.dictionary.to_pylist(),
        "__vidx__": enc.indices.to_numpy().astype(np.int64),
        "t_s": c.timestamps(),
        "speed": c.floats(COL.speed, required=True),
        "ax": c.floats(COL.accel_long, required=True),
        "ay": c.floats(COL.accel_lat, required=True),
        "az": c.floats(COL.accel_vert, required=True),
    }
    sp = out["speed"]
    if (sp < 0).any():
        raise c.fail(COL.speed, "negative speed", sp < 0)
    if (sp > 400).any():
        raise c.fail(COL.speed, "speed above 400 km/h", sp > 400)

    lat = c.floats(COL.lat, required=False)
    lon = c.floats(COL.lon, required=False)
    if (np.isnan(lat) != np.isnan(lon)).any():
        which = COL.lat if (~np.isnan(lat) & np.isnan(lon)).any() else COL.lon
        other = COL.lon if which == COL.lat else COL.lat
        raise c.fail(which, f"value without {other}", np.isnan(lat) != np.isnan(lon))
    if (np.abs(lat) > 90).any():
        raise c.fail(COL.lat, "latitude outside [-90, 90]", np.abs(lat) > 90)
    if (np.abs(lon) > 180).any():
        raise c.fail(COL.lon, "longitude outside [-180, 180]", np.abs(lon) > 180)
    out["lat"], out["lon"] = lat, lon

    fix = ~np.isnan(lat)
    names = table.column_names
    ranges = {
        "heading": (COL.heading, 0.0, 360.0),
        "accuracy": (COL.accuracy, 0.0, np.inf),
        "brake": (COL.brake_pedal, 0.0, 100.0),
        "soc": (COL.soc, 0.0, 100.0),
        "model_year": (COL.model_year, 1950.0, 2100.0),
    }
    for key, (col, lo, hi) in ranges.items():
        if col not in names:
            continue
        x = c.floats(col, required=False)
        if key in ("heading", "accuracy"):
            x = np.where(fix, x, np.nan)  # describes a fix: unused on rows without one
        bad = (x < lo) | (x > hi)
        if bad.any():
            raise c.fail(col, f"value outside [{lo:g}, {hi:g}]", bad)
        if key == "model_year" and (x[~np.isnan(x)] % 1 != 0).any():
            raise c.fail(col, "not a whole year", ~np.isnan(x) & (x % 1 != 0))
        out[key] = x

    if COL.abs_engaged in names:
        a = c.arr(COL.abs_engaged)
        if pa.types.is_boolean(a.type):
            code = pc.fill_null(pc.cast(a, pa.int8()), -1).to_numpy(zero_copy_only=False).astype(np.int64)
        elif pa.types.is_integer(a.type) or pa.types.is_floating(a.type) or pa.types.is_null(a.type):
            code = pc.fill_null(pc.cast(a, pa.float64()), -1.0).to_numpy(zero_copy_only=False)
            if (~np.isin(code, (-1.0, 0.0, 1.0))).any():
                raise c.fail(COL.abs_engaged, "not a boolean (true/false/1/0)", ~np.isin(code, (-1.0, 0.0, 1.0)))
            code = code.astype(np.int8)
        else:
            s = pc.utf8_lower(pc.utf8_trim_whitespace(c.strings(COL.abs_engaged)))
            s = pc.fill_null(s, "").to_numpy(zero_copy_only=False).astype(str)
            code = np.select([np.isin(s, ("true", "1", "1.0")), np.isin(s, ("false", "0", "0.0")), s == ""], [1, 0, -1], 2)
            if (code == 2).any():
                raise c.fail(COL.abs_engaged, "not a boolean (true/false/1/0)", code == 2)
        out["abs"] = code.astype(np.int64)

    if COL.powertrain in names:
        s = pc.fill_null(c.strings(COL.powertrain), "")
        enc = pc.dictionary_encode(s)
        words = enc.dictionary.to_pylist()
        known = [w == "" or w in POWERTRAIN_TYPES for w in words]
        if not all(known):
            bad_codes = np.flatnonzero(~np.asarray(known))
            bad = np.isin(enc.indices.to_numpy(), bad_codes)
            raise c.fail(COL.powertrain, f"not one of {list(POWERTRAIN_TYPES)}", bad)
        mapping = np.array([POWERTRAIN_TYPES.index(w) if w else -1 for w in words], np.int64)
        out["powertrain"] = mapping[enc.indices.to_numpy()]
    return out


# ------------------------------------------------------------------------------- frames
def frames_of(
    trace: VehicleTrace, vehicle_id: str, *, frame_s: float, first_seq: int = 0
) -> list[Frame]:
    """Cut one vehicle's trace into consecutive ``Frame`` messages of ``frame_s`` seconds.

    Frame ``k`` holds the samples with ``floor((t - t0) / frame_s) == k`` (``t0``: the first
    sample); empty stretches give no frame; ``seq`` counts emitted frames from
    ``first_seq``. ``trip_end`` is set on the last frame and on a frame followed by a gap
    longer than ``TRIP_GAP_S``. Each fix goes into the frame whose window holds its time.

    Per frame: brake pedal, fix heading and fix accuracy are sent only when every value in
    the frame is known (the frame schema has no per-value gaps); ``soc_pct`` is the last known
    value in the frame.

    The offline scorer and the Kafka replay both cut traces with this function (or its lazy
    form ``iter_frames``), so both see the same frames.

    Raises
    ------
    ValueError
        ``frame_s`` not positive, or a fix outside every frame's window.
    """
    return list(iter_frames(trace, vehicle_id, frame_s=frame_s, first_seq=first_seq))


def frame_windows(trace: VehicleTrace, *, frame_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample index ranges ``[start, end)`` of the frames of a trace (see ``frames_of``)."""
    if not frame_s > 0:
        raise ValueError(f"{frame_s=} must be positive")
    n = len(trace.t_s)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = np.floor((trace.t_s - trace.t_s[0]) / frame_s).astype(np.int64)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(k)) + 1])
    ends = np.concatenate([starts[1:], [n]])
    return starts, ends


def iter_frames(
    trace: VehicleTrace, vehicle_id: str, *, frame_s: float, first_seq: int = 0
) -> Iterator[Frame]:
    """The frames of ``frames_of``, built one at a time (for long traces)."""
    starts, ends = frame_windows(trace, frame_s=frame_s)
    if len(starts) == 0:
        return
    t = trace.t_s
    t0 = t[0]
    k = np.floor((t[starts] - t0) / frame_s).astype(np.int64)
    fk = np.floor((trace.fix_t_s - t0) / frame_s).astype(np.int64)
    fpos = np.searchsorted(k, fk)
    if len(fk) and ((fpos >= len(k)) | (k[np.minimum(fpos, len(k) - 1)] != fk)).any():
        raise ValueError("a GPS fix lies outside the time window of every frame with samples")
    fbounds = np.searchsorted(fpos, np.arange(len(k) + 1))
    gap_after = np.concatenate([t[starts[1:]] - t[ends[:-1] - 1] > TRIP_GAP_S, [True]])

    def opt_list(a: np.ndarray | None, lo: int, hi: int) -> list[float | None] | None:
        if a is None:
            return None
        v = a[lo:hi]
        if np.isnan(v).all() and v.size:
            return None
        return np.where(np.isnan(v), None, v).tolist() if np.isnan(v).any() else v.tolist()

    for j, (lo, hi) in enumerate(zip(starts, ends)):
        flo, fhi = fbounds[j], fbounds[j + 1]
        soc = None
        if trace.soc_pct is not None:
            known = trace.soc_pct[lo:hi][~np.isnan(trace.soc_pct[lo:hi])]
            soc = float(known[-1]) if len(known) else None
        yield Frame(
            schema_version=FRAME_SCHEMA_VERSION,
            vehicle_id=vehicle_id,
            seq=first_seq + j,
            trip_end=bool(gap_after[j]),
            t_s=t[lo:hi].tolist(),
            speed_kmh=trace.speed_kmh[lo:hi].tolist(),
            accel_long_mps2=trace.accel_long_mps2[lo:hi].tolist(),
            accel_lat_mps2=trace.accel_lat_mps2[lo:hi].tolist(),
            accel_vert_mps2=trace.accel_vert_mps2[lo:hi].tolist(),
            brake_pedal_pct=opt_list(trace.brake_pedal_pct, lo, hi),
            abs_engaged=None if trace.abs_engaged is None else trace.abs_engaged[lo:hi].tolist(),
            fix_t_s=trace.fix_t_s[flo:fhi].tolist(),
            fix_lat_deg=trace.fix_lat_deg[flo:fhi].tolist(),
            fix_lon_deg=trace.fix_lon_deg[flo:fhi].tolist(),
            fix_heading_deg=opt_list(trace.fix_heading_deg, flo, fhi),
            fix_accuracy_m=opt_list(trace.fix_accuracy_m, flo, fhi),
            powertrain=trace.powertrain,
            soc_pct=soc,
            model_year=trace.model_year,
        )
