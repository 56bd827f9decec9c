"""CBOR frames: the same arrays as JSON frames, and the same reasons for bad input."""

import json
import math

import cbor2
import numpy as np
import orjson
import pytest

from pipeline.pseudonym import Pseudonymiser
from pipeline.stage1 import FrameHandler
from schemas._errors import SchemaError
from schemas.bundle import encode_bundle, split_bundle
from schemas.frame import Frame, FrameArrays, decode_frame, encode_frame
from schemas.frame_cbor import CBOR_MAGIC, CBOR_TYPED_ARRAYS, decode_frame_cbor, encode_frame_cbor
from schemas.tracefile import iter_frames
from simulator import simulate_fleet

GOOD = {
    "schema_version": 1, "vehicle_id": "VF1AAAAAAAAAAAAAA", "seq": 3,
    "t_s": [1.7e9, 1.7e9 + 0.01, 1.7e9 + 0.02], "speed_kmh": [30.0, 30.5, 31.0],
    "accel_long_mps2": [0.0, 0.1, -0.2], "accel_lat_mps2": [0.0, 0.0, 0.3], "accel_vert_mps2": [9.8, 9.81, 9.79],
    "brake_pedal_pct": [None, 12.5, 0.0], "abs_engaged": [False, True, False],
    "fix_t_s": [1.7e9, 1.7e9 + 0.015], "fix_lat_deg": [48.82, 48.8201], "fix_lon_deg": [1.95, 1.9501],
    "fix_heading_deg": [None, 90.0], "fix_accuracy_m": [3.0, None],
    "powertrain": "ELECTRIC", "soc_pct": 55.0, "model_year": 2021, "trip_end": True,
}  # fmt: skip


def _same(x: FrameArrays, y: FrameArrays) -> None:
    for name in FrameArrays.__slots__:
        u, v = getattr(x, name), getattr(y, name)
        if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
            assert u is not None and v is not None, name
            assert u.dtype == v.dtype and u.shape == v.shape, name
            # the bits, not the values: -0.0 and 0.0 must not be told apart differently
            assert u.tobytes() == v.tobytes(), name
        else:
            assert u == v, name


def _with(**changes):
    d = dict(GOOD)
    d.update(changes)
    return d


def test_the_typed_arrays_are_the_models_array_fields():
    lists = [n for n, f in Frame.model_fields.items() if "list[" in str(f.annotation)]
    assert sorted(CBOR_TYPED_ARRAYS) == sorted(lists)
    assert CBOR_TYPED_ARRAYS["speed_kmh"] == 86 and CBOR_TYPED_ARRAYS["abs_engaged"] == 64


def test_every_field_and_null_reads_as_from_json():
    frame = Frame.model_validate(GOOD)
    raw = encode_frame(frame, "cbor")
    assert raw[:3] == CBOR_MAGIC
    # a standard reader sees the document: a map of the model's fields, arrays as RFC 8746 tags
    doc = cbor2.loads(raw)
    assert doc["vehicle_id"] == GOOD["vehicle_id"] and doc["t_s"].tag == 86 and doc["abs_engaged"].tag == 64
    c, j = decode_frame(raw), decode_frame(encode_frame(frame, "json"))
    _same(c, j)
    assert np.isnan(c.brake_pedal_pct[0]) and c.brake_pedal_pct[1] == 12.5
    assert c.abs_engaged.dtype == bool and c.abs_engaged.tolist() == [False, True, False]
    assert c.powertrain == "ELECTRIC" and c.trip_end and c.model_year == 2021
    c.speed_kmh[0] = 1.0  # the arrays are the reader's own, as from JSON


def test_defaults_of_absent_fields_are_the_models():
    doc = {k: GOOD[k] for k in ("schema_version", "vehicle_id", "seq", "t_s", "speed_kmh", "accel_long_mps2",
                                "accel_lat_mps2", "accel_vert_mps2")}  # fmt: skip
    _same(decode_frame(encode_frame_cbor(doc)), decode_frame(orjson.dumps(doc)))
    c = decode_frame(encode_frame_cbor(doc))
    assert c.fix_t_s.size == 0 and c.brake_pedal_pct is None and not c.trip_end and c.model_year is None


def test_simulated_frames_read_as_from_json():
    from roadnet import load_network

    fleet = simulate_fleet(load_network(), n_vehicles=3, seed=11, trip_km=(0.5, 0.8), departure_spread_s=10, fs_hz=100)
    n = 0
    for vid, trace in fleet.traces.items():
        for frame in iter_frames(trace, vid, frame_s=5.0):
            _same(decode_frame(encode_frame(frame, "cbor")), decode_frame(encode_frame(frame, "json")))
            n += 1
    assert n > 10


def test_plain_cbor_arrays_are_read_too():
    # a producer without typed arrays sends the JSON document as it is
    raw = cbor2.dumps(cbor2.CBORTag(55799, GOOD))
    _same(decode_frame(raw), decode_frame(orjson.dumps(GOOD)))
    # and one with some columns typed, some not
    mixed = cbor2.loads(encode_frame_cbor(GOOD))
    mixed = {**mixed, "speed_kmh": GOOD["speed_kmh"]}
    _same(decode_frame(cbor2.dumps(cbor2.CBORTag(55799, mixed))), decode_frame(orjson.dumps(GOOD)))


def test_nan_in_a_typed_array_is_null_only_where_null_is_allowed():
    doc = _with(brake_pedal_pct=[math.nan, 12.5, math.nan], fix_accuracy_m=[math.nan, math.nan])
    c = decode_frame(encode_frame_cbor(doc))
    assert np.isnan(c.brake_pedal_pct[[0, 2]]).all() and np.isnan(c.fix_accuracy_m).all()
    with pytest.raises(SchemaError, match="fix_lat_deg.1: Input should be a finite number"):
        decode_frame(encode_frame_cbor(_with(fix_lat_deg=[48.8, math.nan])))


# the same bad frames as the JSON ones of test_stage1, and the same reasons
BAD = [
    (_with(schema_version=99), "unknown schema_version 99"),
    ({k: v for k, v in GOOD.items() if k != "speed_kmh"}, "speed_kmh: Field required"),
    (_with(accel_vert_mps2=[9.8, float("nan"), 9.8]), "accel_vert_mps2.1: Input should be a finite number"),
    (_with(t_s=[1.7e9, float("inf"), 1.8e9]), "t_s.1: Input should be a finite number"),
    (_with(speed_kmh=[30.0, 30.0]), "speed_kmh has 2 values, t_s has 3"),
    (_with(t_s=[1.7e9, 1.7e9 - 1, 1.7e9 + 1]), "not strictly increasing"),
    (_with(fix_t_s=[1.7e9, 1.7e9]), "fix_t_s is not strictly increasing"),
    (_with(fix_lat_deg=[148.0, 48.0]), "fix_lat_deg.0"),
    (_with(fix_lon_deg=[1.95]), "fix_lon_deg has 1 values, fix_t_s has 2"),
    (_with(speed_kmh=[30.0, 401.0, 30.0]), "speed_kmh.1: Input should be less than or equal to 400"),
    (_with(speed_kmh=[30.0, -1.0, 30.0]), "speed_kmh.1: Input should be greater than or equal to 0"),
    (_with(brake_pedal_pct=[None, 101.0, 2.0]), "brake_pedal_pct.1: Input should be less than or equal to 100"),
    (_with(t_s=[]), "t_s: List should have at least 1 item"),
    (_with(surprise=1), "surprise: Extra inputs are not permitted"),
    (_with(vehicle_id=""), "vehicle_id: String should have at least 1 character"),
    (_with(seq=-1), "seq: Input should be greater than or equal to 0"),
    (_with(seq="three"), "seq: Input should be a valid integer"),
    (_with(speed_kmh=[30.0, None, 30.0]), "speed_kmh.1: Input should be a valid number"),
    (_with(abs_engaged=[True, None, False]), "abs_engaged.1"),
    (_with(t_s=None), "t_s"),
    (_with(fix_t_s=None), "fix_t_s: Input should be a valid list"),
    # null for a list the model requires, with nothing else to trip on
    ({**{k: v for k, v in GOOD.items() if not k.startswith("fix_")}, "fix_t_s": None},
     "fix_t_s: Input should be a valid list"),
    (_with(model_year=1900), "model_year: Input should be greater than or equal to 1950"),
]


@pytest.mark.parametrize("doc, reason", BAD, ids=[r for _, r in BAD])
def test_bad_frames_give_the_json_reason(doc, reason):
    with pytest.raises(SchemaError) as cbor_err:
        decode_frame(encode_frame_cbor(doc))
    assert reason in str(cbor_err.value)
    with pytest.raises(SchemaError) as json_err:
        decode_frame(json.dumps(doc).encode())
    assert reason in str(json_err.value)


def _raw(**fields) -> bytes:
    doc = dict(cbor2.loads(encode_frame_cbor(GOOD)))
    doc.update(fields)
    return cbor2.dumps(cbor2.CBORTag(55799, doc))


@pytest.mark.parametrize("raw, reason", [
    (_raw(speed_kmh=cbor2.CBORTag(85, np.zeros(3, "<f4").tobytes())), "speed_kmh: CBOR tag 85, expected a typed array with tag 86"),
    (_raw(speed_kmh=cbor2.CBORTag(86, b"\x00" * 20)), "speed_kmh: typed array of 20 bytes"),
    (_raw(abs_engaged=cbor2.CBORTag(64, b"\x00\x02\x01")), "abs_engaged.1"),
    (_raw(abs_engaged=cbor2.CBORTag(86, np.zeros(3).tobytes())), "abs_engaged: CBOR tag 86, expected a typed array with tag 64"),
    (_raw(vehicle_id=cbor2.CBORTag(86, np.zeros(3).tobytes())), "vehicle_id: Input should be a valid string"),
], ids=["float32", "ragged", "not a bool", "bool as float", "tag for a string"])  # fmt: skip
def test_bad_typed_arrays_are_refused_with_a_reason(raw, reason):
    with pytest.raises(SchemaError) as err:
        decode_frame(raw)
    assert reason in str(err.value)


def test_broken_cbor_bytes_are_refused():
    raw = encode_frame(Frame.model_validate(GOOD), "cbor")
    for bad, reason in [(raw[: len(raw) // 2], "not a CBOR frame"), (CBOR_MAGIC, "not a CBOR frame"),
                        (raw + b"\x00", "1 bytes after the frame's map"),
                        (cbor2.dumps(cbor2.CBORTag(55799, [1, 2])), "not a CBOR map but"),
                        (cbor2.dumps(cbor2.CBORTag(55799, {1: 2})), "keys are text strings"),
                        (CBOR_MAGIC + b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff", "not a CBOR frame")]:
        with pytest.raises(SchemaError, match=reason):
            decode_frame_cbor(bad)


def test_cbor_frames_travel_in_bundles_beside_json_ones():
    frame = Frame.model_validate(GOOD)
    parts = split_bundle(encode_bundle([encode_frame(frame, "cbor"), encode_frame(frame, "json")]))
    _same(decode_frame(parts[0]), decode_frame(parts[1]))


def test_a_bad_cbor_frame_is_a_dead_letter():
    from roadnet import load_network

    handler = FrameHandler(net=load_network(), pseudonymise=Pseudonymiser("k" * 40))
    out = handler.handle(encode_frame_cbor(_with(accel_vert_mps2=[9.8, float("nan"), 9.8])), lambda k: None)
    assert out.dead_letter is not None and "accel_vert_mps2.1" in out.dead_letter[1]
    good = handler.handle(encode_frame(Frame.model_validate(GOOD), "cbor"), lambda k: None)
    assert good.dead_letter is None and good.state is not None


def test_unknown_encoding_is_refused():
    with pytest.raises(ValueError, match="'cbor' or 'json'"):
        encode_frame(Frame.model_validate(GOOD), "msgpack")


def test_the_replay_writes_cbor_unless_told_and_both_read_the_same(tmp_path, replay_producer):
    from roadnet import load_network
    from simulator import replay as rp
    from simulator import write_fleet

    fleet = simulate_fleet(load_network(), n_vehicles=2, seed=5, trip_km=(0.3, 0.4), departure_spread_s=5)
    traces = write_fleet(fleet, tmp_path, format="parquet")
    sent = {}
    for encoding in ("cbor", "json", None):
        producer = replay_producer()
        kw = {} if encoding is None else {"encoding": encoding}
        rp.replay([traces], "unused:9092", "t", frame_s=5.0, progress=False, bundle=0, **kw)
        sent[encoding] = [value for _, _, value, _, _ in producer.sent]
    assert all(raw[:3] == CBOR_MAGIC for raw in sent["cbor"]) and sent[None] == sent["cbor"]
    assert all(raw[:1] == b"{" for raw in sent["json"]) and len(sent["json"]) == len(sent["cbor"]) > 4
    for c, j in zip(sent["cbor"], sent["json"]):
        _same(decode_frame(c), decode_frame(j))
    with pytest.raises(ValueError, match="'cbor' or 'json'"):
        rp.replay([traces], "unused:9092", "t", progress=False, encoding="xml")


def test_the_replay_commands_take_an_encoding(capsys):
    from pipeline.cli import build_parser
    from simulator.cli import build_parser as sim_parser

    p = build_parser()
    assert p.parse_args(["replay", "t"]).encoding == "cbor"
    assert p.parse_args(["replay", "t", "--encoding", "json"]).encoding == "json"
    assert sim_parser().parse_args(["replay", "t", "--bootstrap", "h:1", "--encoding", "json"]).encoding == "json"
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["replay", "t", "--encoding", "xml"])
    assert exc.value.code == 2 and "invalid choice: 'xml'" in capsys.readouterr().err


# ---------------------------------------------------- the compiled reader and its oracle
def _reference(raw: bytes):
    """The reference path alone: each column read, then checked as a whole (the oracle)."""
    from schemas.frame_cbor import _document, _from_document

    return _from_document(_document(raw))


def _outcome(fn, raw: bytes):
    try:
        return fn(raw), None
    except SchemaError as exc:
        return None, str(exc)


def _same_outcome(raw: bytes) -> bool:
    """decode_frame_cbor and the reference give the same frame to the bit (and the same
    array flags), or the same reason; True when the frame was good."""
    got, got_err = _outcome(decode_frame_cbor, raw)
    want, want_err = _outcome(_reference, raw)
    assert got_err == want_err
    if want is None:
        return False
    _same(got, want)
    for name in FrameArrays.__slots__:
        u, v = getattr(got, name), getattr(want, name)
        if isinstance(u, np.ndarray):
            flags = (u.flags.writeable, u.flags.c_contiguous, u.flags.aligned)
            assert flags == (v.flags.writeable, v.flags.c_contiguous, v.flags.aligned) == (True, True, True), name
    return True


_SPECIALS = [math.nan, -math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1e308, -1e308]
# quiet NaNs with payloads (numpy's fmin/fmax reductions, the reference's, mishandle
# signaling NaNs: test_a_signaling_nan_does_not_hide_a_bad_value)
_NANS = np.frombuffer(np.array([0x7FF8000000000123, 0xFFF8DEADBEEF0001], np.uint64).tobytes(), np.float64)
_SIGNALING_NAN = np.frombuffer(np.array([0x7FF0000000000001], np.uint64).tobytes(), np.float64)


def _mutated(rng: np.random.Generator) -> dict:
    """A typed-array frame document with a few random changes: values on and off the
    bounds, NaN (with payloads), inf, -0.0, lengths, times out of order, nulls, absences."""
    n, k = int(rng.integers(0, 5)), int(rng.integers(0, 4))
    t = 1.7e9 + np.cumsum(rng.uniform(0.001, 0.02, n))
    ft = 1.7e9 + np.cumsum(rng.uniform(0.01, 1.0, k))
    doc = {"schema_version": 1, "vehicle_id": "V" * int(rng.integers(0, 3)), "seq": int(rng.integers(-1, 3)),
           "t_s": t, "speed_kmh": rng.uniform(0, 400, n), "accel_long_mps2": rng.normal(0, 3, n),
           "accel_lat_mps2": rng.normal(0, 3, n), "accel_vert_mps2": rng.normal(9.8, 3, n),
           "brake_pedal_pct": rng.uniform(0, 100, n), "abs_engaged": rng.integers(0, 2, n).astype(np.uint8),
           "fix_t_s": ft, "fix_lat_deg": rng.uniform(-90, 90, k), "fix_lon_deg": rng.uniform(-180, 180, k),
           "fix_heading_deg": rng.uniform(0, 360, k), "fix_accuracy_m": rng.uniform(0, 50, k)}  # fmt: skip
    for _ in range(int(rng.integers(0, 4))):
        name = str(rng.choice(list(CBOR_TYPED_ARRAYS)))
        v = doc.get(name)
        if not isinstance(v, np.ndarray):  # already absent, null or plain
            continue
        what = int(rng.integers(0, 9))
        if what == 0 and v.size:  # a special value
            v = v.copy()
            v[rng.integers(v.size)] = rng.choice(_SPECIALS) if v.dtype.kind == "f" else rng.integers(2, 256)
        elif what == 1 and v.size and v.dtype.kind == "f":  # a bound, or just past it
            from schemas.frame_cbor import _COLUMNS

            col = _COLUMNS[name]
            edge = rng.choice([b for b in (col.ge, col.le) if b is not None] or [0.0])
            v = v.copy()
            v[rng.integers(v.size)] = float(edge) + rng.choice([0.0, -1e-9, 1e-9, -0.0])
        elif what == 2 and v.size and v.dtype.kind == "f":  # NaN with a payload
            v = v.copy()
            v[rng.integers(v.size)] = _NANS[rng.integers(2)]
        elif what == 3 and v.size > 1:  # one value repeated, or two swapped
            v = v.copy()
            i = int(rng.integers(v.size - 1))
            v[i + 1] = v[i] if rng.random() < 0.5 or v.dtype.kind != "f" else v[i] - 1
        elif what == 4:  # one value more or fewer
            v = np.append(v, v[-1:] + 1) if rng.random() < 0.5 and v.size else v[:-1]
        elif what == 5:
            doc.pop(name)
            continue
        elif what == 6:
            doc[name] = None
            continue
        elif what == 7:  # the whole column NaN (null where allowed)
            v = np.full(v.size, math.nan) if v.dtype.kind == "f" else v
        elif what == 8:  # a plain array
            doc[name] = [None if x != x else x for x in v.tolist()] if v.dtype.kind == "f" else [bool(x) for x in v]
            continue
        doc[name] = v
    if rng.random() < 0.2:
        doc.update(rng.choice([{"trip_end": True}, {"soc_pct": 101.0}, {"powertrain": "DIESEL"},
                               {"model_year": 2021}, {"surprise": 1}, {"soc_pct": math.nan}]))
    return doc


def _cbor(doc: dict) -> bytes:
    out = {}
    for name, v in doc.items():
        if isinstance(v, np.ndarray):
            out[name] = cbor2.CBORTag(CBOR_TYPED_ARRAYS[name], v.astype("<f8" if v.dtype.kind == "f" else "u1").tobytes())
        else:
            out[name] = v
    return cbor2.dumps(cbor2.CBORTag(55799, out))


def test_compiled_reader_is_the_reference_on_random_frames():
    rng = np.random.default_rng(2026)
    good = 0
    for _ in range(3000):
        good += _same_outcome(_cbor(_mutated(rng)))
    assert 300 < good < 2700  # both outcomes, many times


def test_compiled_reader_is_the_reference_on_edges():
    base = {k: np.asarray(v, float) if isinstance(v, list) and k != "abs_engaged" else v for k, v in GOOD.items()}
    base["brake_pedal_pct"] = np.array([math.nan, 12.5, 0.0])
    base["fix_heading_deg"] = np.array([math.nan, 90.0])
    base["fix_accuracy_m"] = np.array([3.0, math.nan])
    base["abs_engaged"] = np.array([0, 1, 0], np.uint8)
    cases = [
        {},  # good
        {"brake_pedal_pct": np.full(3, math.nan)},  # all null
        {"brake_pedal_pct": _NANS[[0, 1, 0]]},  # null with payloads, kept to the bit
        {"fix_accuracy_m": np.array([math.inf, math.nan])},
        {"fix_accuracy_m": np.array([-0.0, 1e308])},  # no upper bound
        {"speed_kmh": np.array([0.0, -0.0, 400.0])},  # on the bounds
        {"speed_kmh": np.array([0.0, -5e-324, 400.0])},
        {"speed_kmh": np.array([0.0, math.nan, 400.0])},
        {"t_s": np.array([1.7e9, 1.7e9, 1.7e9 + 1])},
        {"t_s": np.array([1.7e9, math.inf, 1.7e9 + 1])},
        {"t_s": np.array([1.7e9]), "speed_kmh": np.array([1.0]), "accel_long_mps2": np.zeros(1),
         "accel_lat_mps2": np.zeros(1), "accel_vert_mps2": np.zeros(1), "brake_pedal_pct": None,
         "abs_engaged": np.ones(1, np.uint8)},  # one sample
        {"fix_t_s": np.array([1.7e9]), "fix_lat_deg": np.array([90.0]), "fix_lon_deg": np.array([-180.0]),
         "fix_heading_deg": np.array([360.0]), "fix_accuracy_m": np.array([0.0])},  # one fix, on the bounds
        {"fix_t_s": np.zeros(0), "fix_lat_deg": np.zeros(0), "fix_lon_deg": np.zeros(0),
         "fix_heading_deg": np.zeros(0), "fix_accuracy_m": np.zeros(0)},  # no fix
        {"fix_t_s": np.array([1.7e9, 1.7e9])},
        {"abs_engaged": np.array([0, 2, 1], np.uint8)},
        {"abs_engaged": np.array([255, 0, 1], np.uint8)},
        {"t_s": np.zeros(0)},
    ]
    for change in cases:
        _same_outcome(_cbor({**base, **change}))
    for name in ("brake_pedal_pct", "abs_engaged", "fix_heading_deg", "fix_accuracy_m", "fix_t_s", "t_s"):
        _same_outcome(_cbor({k: v for k, v in base.items() if k != name}))  # absent
        _same_outcome(_cbor({**base, name: None}))  # null
    for raw in (_raw(speed_kmh=cbor2.CBORTag(85, np.zeros(3, "<f4").tobytes())),
                _raw(speed_kmh=cbor2.CBORTag(86, b"\x00" * 20)), _raw(abs_engaged=cbor2.CBORTag(86, np.zeros(3).tobytes())),
                _raw(speed_kmh=cbor2.CBORTag(86, "text")), _raw(speed_kmh=[30.0, 30.5, 31.0])):
        _same_outcome(raw)


@pytest.mark.parametrize("name", sorted(CBOR_TYPED_ARRAYS))
def test_column_kernel_is_read_then_valid(name):
    from schemas.frame_cbor import _COLUMNS

    col = _COLUMNS[name]
    rng = np.random.default_rng(7)
    pool = np.concatenate([_SPECIALS, _NANS, [b + d for b in (col.ge, col.le) if b is not None for d in (0.0, -1e-9, 1e-9)],
                           rng.normal(0, 500, 8), rng.uniform(col.ge or 0, col.le or 10, 8)])  # fmt: skip
    for n in [0, 1, 2, 3, 7, 64, 1000] * 20:
        if col.tag == 64:
            values = rng.choice(np.array([0, 1, 1, 0, 2, 255], np.uint8), n, p=[0.45, 0.45, 0.05, 0.03, 0.01, 0.01])
        else:
            values = rng.choice(pool, n) if rng.random() < 0.5 else np.sort(rng.choice(pool, n))
        tag = cbor2.CBORTag(col.tag, values.tobytes())
        a = col.read(tag)
        got = col.read_checked(tag)
        if not col.valid(a):
            assert got is None
            continue
        assert got is not None
        out, increasing = got
        want = a.astype(bool) if col.tag == 64 else a
        assert out.dtype == want.dtype and out.tobytes() == want.tobytes()
        if name in ("t_s", "fix_t_s"):
            assert increasing == bool((np.diff(a) > 0).all())


def test_a_signaling_nan_does_not_hide_a_bad_value():
    # numpy's fmin/fmax reductions (the reference's check) lose a bound next to a
    # signaling NaN; the compiled reader checks each value, so the model gives the reason
    bad = np.concatenate([_SIGNALING_NAN, [101.0, -math.inf]])
    assert np.fmax.reduce(bad) != 101.0  # numpy's miss, which the reference inherits
    raw = _raw(brake_pedal_pct=cbor2.CBORTag(86, bad.tobytes()))
    with pytest.raises(SchemaError, match="brake_pedal_pct.1: Input should be less than or equal to 100"):
        decode_frame_cbor(raw)
    # a signaling NaN is a null like any NaN, kept to the bit
    nulls = np.concatenate([_SIGNALING_NAN, _NANS])
    c = decode_frame_cbor(_raw(brake_pedal_pct=cbor2.CBORTag(86, nulls.tobytes())))
    assert c.brake_pedal_pct.tobytes() == nulls.tobytes()
    _same(c, _reference(_raw(brake_pedal_pct=cbor2.CBORTag(86, nulls.tobytes()))))
