"""schemas.tracefile: round trips, timestamps, validation errors, rate inference, frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from schemas._errors import SchemaError
from schemas.frame import decode_frame, encode_frame
from schemas.trace import COL
from schemas.tracefile import (
    TRIP_GAP_S,
    VehicleTrace,
    frames_of,
    infer_rate_hz,
    read_traces,
    write_traces,
)

T0 = 1_709_538_000.0


def make_trace(n=500, fs=100.0, *, t0=T0, fix_every=100, seed=0, full=True) -> VehicleTrace:
    """A small deterministic trace; fixes every ``fix_every`` samples."""
    rng = np.random.default_rng(seed)
    t = np.round(t0 + np.arange(n) / fs, 6)
    fix = np.arange(0, n, fix_every)
    k = len(fix)
    heading = np.round(rng.uniform(0, 359, k), 1)
    heading[0] = np.nan  # a fix without heading (standing)
    return VehicleTrace(
        t_s=t,
        speed_kmh=np.round(rng.uniform(0, 90, n), 2),
        accel_long_mps2=np.round(rng.normal(0, 1, n), 3),
        accel_lat_mps2=np.round(rng.normal(0, 1, n), 3),
        accel_vert_mps2=np.round(9.81 + rng.normal(0, 0.3, n), 3),
        fix_t_s=t[fix],
        fix_lat_deg=np.round(48.8 + rng.uniform(0, 0.01, k), 7),
        fix_lon_deg=np.round(1.95 + rng.uniform(0, 0.01, k), 7),
        fix_heading_deg=heading if full else None,
        fix_accuracy_m=np.round(rng.uniform(2, 8, k), 1) if full else None,
        brake_pedal_pct=np.round(rng.uniform(0, 100, n), 1) if full else None,
        abs_engaged=(rng.random(n) < 0.01) if full else None,
        powertrain="ELECTRIC" if full else None,
        soc_pct=np.round(np.linspace(80, 79, n), 1) if full else None,
        model_year=2021 if full else None,
    )


def assert_same(a: VehicleTrace, b: VehicleTrace) -> None:
    for name in VehicleTrace.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert x is not None and y is not None, name
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            assert x == y, name


def write_table(path: Path, cols: dict) -> Path:
    table = pa.table(cols)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pa_csv.write_csv(table, str(path))
    return path


def base_columns(n=50, fs=10.0) -> dict:
    """Minimal valid columns of one vehicle as Python lists (easy to spoil)."""
    lat = [48.8 if i % 10 == 0 else None for i in range(n)]
    lon = [1.95 if i % 10 == 0 else None for i in range(n)]
    return {
        COL.vehicle_id: ["VF1TEST"] * n,
        COL.timestamp: [T0 + i / fs for i in range(n)],
        COL.speed: [30.0] * n,
        COL.accel_long: [0.1] * n,
        COL.accel_lat: [0.0] * n,
        COL.accel_vert: [9.81] * n,
        COL.lat: lat,
        COL.lon: lon,
    }


class TestRoundTrip:
    @pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
    @pytest.mark.parametrize("time_format", ["epoch", "iso"])
    def test_round_trip(self, tmp_path, suffix, time_format):
        vehicles = {"VF1AAA": make_trace(seed=1), "VF1BBB": make_trace(n=300, fs=50.0, seed=2, full=False)}
        path = write_traces(tmp_path / f"traces{suffix}", vehicles, time_format=time_format)
        back = read_traces(path)
        assert sorted(back) == sorted(vehicles)
        for vid, tr in vehicles.items():
            assert_same(tr, back[vid])
        assert back["VF1AAA"].rate_hz == 100.0
        assert back["VF1BBB"].rate_hz == 50.0

    def test_unsorted_rows_and_several_files(self, tmp_path):
        tr = make_trace(n=400, full=False)
        path = write_traces(tmp_path / "a.csv", {"V1": tr, "V2": make_trace(n=200, seed=3, full=False)})
        table = pa_csv.read_csv(path)
        shuffled = table.take(np.random.default_rng(0).permutation(table.num_rows))
        pa_csv.write_csv(shuffled.slice(0, 300), str(tmp_path / "traces_1.csv"))
        pq.write_table(shuffled.slice(300), tmp_path / "traces_2.parquet")
        back = read_traces(tmp_path)  # a directory: its traces* files
        assert_same(tr, back["V1"])

    def test_iso_timestamps_with_offset(self, tmp_path):
        cols = base_columns(n=20)
        cols[COL.timestamp] = [f"2024-03-04T09:30:{i / 10:06.3f}+01:00" for i in range(20)]
        back = read_traces(write_table(tmp_path / "t.csv", cols))
        assert back["VF1TEST"].t_s[0] == pytest.approx(1709541000.0)
        assert back["VF1TEST"].rate_hz == 10.0

    def test_arrow_timestamp_column(self, tmp_path):
        cols = base_columns(n=20)
        cols[COL.timestamp] = pa.array(
            (np.array(cols[COL.timestamp]) * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")
        )
        back = read_traces(write_table(tmp_path / "t.parquet", cols))
        assert back["VF1TEST"].t_s[0] == T0


class TestValidation:
    def check(self, tmp_path, cols, match, suffix=".csv"):
        path = write_table(tmp_path / f"bad{suffix}", cols)
        with pytest.raises(SchemaError, match=match) as info:
            read_traces(path)
        assert str(path) in str(info.value)
        return str(info.value)

    def test_missing_column(self, tmp_path):
        cols = base_columns()
        del cols[COL.accel_vert]
        self.check(tmp_path, cols, r"missing required column.*Vehicle\.Acceleration\.Vertical")

    def test_not_a_number(self, tmp_path):
        cols = base_columns()
        cols[COL.speed] = [str(v) for v in cols[COL.speed]]
        cols[COL.speed][7] = "fast"
        msg = self.check(tmp_path, cols, r"'Vehicle\.Speed'.*not a number")
        assert "row(s) 8" in msg

    def test_wrong_type_in_parquet(self, tmp_path):
        cols = base_columns()
        cols[COL.accel_lat] = ["a"] * len(cols[COL.accel_lat])
        self.check(tmp_path, cols, r"'Vehicle\.Acceleration\.Lateral'.*not a number", ".parquet")

    @pytest.mark.parametrize("value", [float("nan"), float("inf")])
    def test_nan_or_inf(self, tmp_path, value):
        cols = base_columns()
        cols[COL.accel_long][3] = value
        msg = self.check(tmp_path, cols, r"'Vehicle\.Acceleration\.Longitudinal'.*NaN or infinite", ".parquet")
        assert "row(s) 4" in msg

    def test_nan_text_in_csv(self, tmp_path):
        cols = base_columns()
        cols[COL.accel_lat] = [str(v) for v in cols[COL.accel_lat]]
        cols[COL.accel_lat][6] = "nan"
        self.check(tmp_path, cols, r"'Vehicle\.Acceleration\.Lateral'.*NaN or infinite value at row\(s\) 7")

    def test_empty_required(self, tmp_path):
        cols = base_columns()
        cols[COL.accel_vert][5] = None
        self.check(tmp_path, cols, r"'Vehicle\.Acceleration\.Vertical'.*empty value at row\(s\) 6")

    def test_negative_speed(self, tmp_path):
        cols = base_columns()
        cols[COL.speed][2] = -1.0
        self.check(tmp_path, cols, r"'Vehicle\.Speed'.*negative speed at row\(s\) 3")

    @pytest.mark.parametrize(("col", "value"), [(COL.lat, 91.0), (COL.lon, -181.0)])
    def test_lat_lon_out_of_range(self, tmp_path, col, value):
        cols = base_columns()
        cols[col][10] = value
        self.check(tmp_path, cols, rf"'{col}'.*outside.*row\(s\) 11")

    def test_lat_without_lon(self, tmp_path):
        cols = base_columns()
        cols[COL.lat][3] = 48.81
        self.check(tmp_path, cols, r"'Vehicle\.CurrentLocation\.Latitude'.*without.*Longitude.*row\(s\) 4")

    def test_lon_without_lat(self, tmp_path):
        cols = base_columns()
        cols[COL.lat][10] = None
        self.check(tmp_path, cols, r"'Vehicle\.CurrentLocation\.Longitude'.*without.*row\(s\) 11")

    def test_duplicate_timestamp(self, tmp_path):
        cols = base_columns()
        cols[COL.timestamp][9] = cols[COL.timestamp][8]
        self.check(tmp_path, cols, r"'timestamp'.*duplicate.*'VF1TEST'.*row 9 .*row 10")

    def test_bad_timestamp_text(self, tmp_path):
        cols = base_columns()
        cols[COL.timestamp] = [f"2024-03-04T09:30:{i / 10:06.3f}Z" for i in range(50)]
        cols[COL.timestamp][4] = "yesterday"
        self.check(tmp_path, cols, r"'timestamp'.*not a time.*row\(s\) 5")

    def test_naive_iso_refused(self, tmp_path):
        cols = base_columns()
        cols[COL.timestamp] = [f"2024-03-04T09:30:{i / 10:06.3f}" for i in range(50)]
        self.check(tmp_path, cols, r"'timestamp'.*zone offset")

    @pytest.mark.parametrize("fs", [2.0, 400.0])
    def test_rate_out_of_range(self, tmp_path, fs):
        cols = base_columns(fs=fs)
        self.check(tmp_path, cols, r"'timestamp'.*'VF1TEST'.*outside the accepted 5-200 Hz")

    def test_bad_powertrain(self, tmp_path):
        cols = base_columns()
        cols[COL.powertrain] = ["DIESEL"] * 50
        self.check(tmp_path, cols, r"'Vehicle\.Powertrain\.Type'.*not one of")

    def test_partial_abs_refused(self, tmp_path):
        cols = base_columns()
        cols[COL.abs_engaged] = [True] * 49 + [None]
        self.check(tmp_path, cols, r"'Vehicle\.ADAS\.ABS\.IsEngaged'.*empty at row\(s\) 50")

    def test_unknown_suffix(self, tmp_path):
        with pytest.raises(SchemaError, match="suffix"):
            read_traces(tmp_path / "t.json")


class TestInferRate:
    @pytest.mark.parametrize("fs", [5.0, 10.0, 20.0, 25.0, 50.0, 100.0, 200.0])
    def test_nominal(self, fs):
        t = T0 + np.arange(200) / fs
        assert infer_rate_hz(t) == fs

    def test_snaps_within_5_percent(self):
        rng = np.random.default_rng(0)
        t = T0 + np.cumsum(rng.normal(1 / 96.0, 1e-4, 500))  # 96 Hz, jittered
        assert infer_rate_hz(t) == 100.0

    def test_gap_does_not_change_rate(self):
        t = np.r_[T0 + np.arange(100) / 100, T0 + 3600 + np.arange(100) / 100]
        assert infer_rate_hz(t) == 100.0

    def test_non_nominal_kept(self):
        assert infer_rate_hz(np.arange(50) / 30.0) == 30.0

    @pytest.mark.parametrize("t", [[T0], [T0, T0], np.arange(10) / 1000.0, np.arange(10) * 0.5])
    def test_refused(self, t):
        with pytest.raises(SchemaError):
            infer_rate_hz(np.asarray(t))


class TestFramesOf:
    def test_partition(self):
        tr = make_trace(n=1234, fs=100.0, fix_every=37)
        frames = frames_of(tr, "VF1AAA", frame_s=2.0, first_seq=5)
        assert [f.seq for f in frames] == list(range(5, 5 + len(frames)))
        assert len(frames) == 7  # 12.34 s
        np.testing.assert_array_equal(np.concatenate([f.t_s for f in frames]), tr.t_s)
        np.testing.assert_array_equal(np.concatenate([f.accel_vert_mps2 for f in frames]), tr.accel_vert_mps2)
        np.testing.assert_array_equal(np.concatenate([f.fix_t_s for f in frames]), tr.fix_t_s)
        np.testing.assert_array_equal(np.concatenate([f.fix_lat_deg for f in frames]), tr.fix_lat_deg)
        assert [f.trip_end for f in frames] == [False] * 6 + [True]
        for f in frames:  # each sample and fix lies in its frame's window
            k = np.floor((np.asarray(f.t_s) - tr.t_s[0]) / 2.0)
            assert (k == k[0]).all()
            if f.fix_t_s:
                assert np.floor((f.fix_t_s[0] - tr.t_s[0]) / 2.0) == k[0]
        assert frames[0].fix_heading_deg[0] is None  # the first fix has no heading: null, others kept
        assert all(h is not None for h in frames[0].fix_heading_deg[1:])
        assert frames[1].fix_heading_deg is not None
        assert frames[-1].soc_pct == tr.soc_pct[-1]
        assert frames[0].powertrain == "ELECTRIC" and frames[0].model_year == 2021

    def test_gaps_end_trips_and_empty_windows_skipped(self):
        a = make_trace(n=300, fs=100.0, full=False)
        t = np.r_[a.t_s, a.t_s + 10.0, a.t_s + 10.0 + TRIP_GAP_S + 60]
        n = len(t)
        tr = VehicleTrace(
            t_s=t, speed_kmh=np.zeros(n), accel_long_mps2=np.zeros(n),
            accel_lat_mps2=np.zeros(n), accel_vert_mps2=np.full(n, 9.81),
            fix_t_s=t[::100], fix_lat_deg=np.full(len(t[::100]), 48.8),
            fix_lon_deg=np.full(len(t[::100]), 1.95),
        )  # fmt: skip
        frames = frames_of(tr, "V", frame_s=1.0)
        assert len(frames) == 9  # 3 s + 3 s (10 s later) + 3 s (after the gap)
        assert [f.trip_end for f in frames] == [False] * 5 + [True] + [False, False, True]
        assert [f.seq for f in frames] == list(range(9))
        assert sum(len(f.t_s) for f in frames) == n

    def test_encodes_and_decodes(self):
        tr = make_trace(n=250, fs=50.0)
        for f in frames_of(tr, "VF1AAA", frame_s=2.0):
            back = decode_frame(encode_frame(f))
            np.testing.assert_array_equal(back.t_s, f.t_s)

    def test_bad_frame_s(self):
        with pytest.raises(ValueError, match="frame_s"):
            frames_of(make_trace(n=10), "V", frame_s=0.0)
