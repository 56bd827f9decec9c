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
