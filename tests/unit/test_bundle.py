"""schemas.bundle and the replay's Bundler: layout, bad bundles, routing by partition."""

from __future__ import annotations

import random
import struct

import orjson
import pytest
from kafka.partitioner.default import DefaultPartitioner

from pipeline.pseudonym import Pseudonymiser
from pipeline.stage1 import FrameHandler
from roadnet import load_network
from schemas._errors import SchemaError
from schemas.bundle import BUNDLE_MAGIC, encode_bundle, is_bundle, partition_of, split_bundle
from schemas.frame import decode_frame
from simulator.replay import Bundler

FRAME = {
    "schema_version": 1, "vehicle_id": "VF1AAAAAAAAAAAAAA", "seq": 0,
    "t_s": [1.7e9, 1.7e9 + 0.01], "speed_kmh": [30.0, 30.0], "accel_long_mps2": [0.0, 0.1],
    "accel_lat_mps2": [0.0, 0.0], "accel_vert_mps2": [9.8, 9.81],
    "fix_t_s": [1.7e9], "fix_lat_deg": [48.82], "fix_lon_deg": [1.95],
}


def _frame(vehicle: str, seq: int = 0) -> bytes:
    return orjson.dumps({**FRAME, "vehicle_id": vehicle, "seq": seq})


class TestLayout:
    def test_round_trip_keeps_each_frame_byte_for_byte(self):
        frames = [_frame("A"), b"{}", _frame("B", 3) * 3]
        raw = encode_bundle(frames)
        assert is_bundle(raw) and raw.startswith(BUNDLE_MAGIC)
        assert split_bundle(raw) == frames

    def test_a_frame_is_not_a_bundle(self):
        assert not is_bundle(_frame("A")) and not is_bundle(b" {") and not is_bundle(b"")

    @pytest.mark.parametrize("raw, reason", [
        (BUNDLE_MAGIC, "holds no frame"),
        (BUNDLE_MAGIC + b"\x05\x00", "truncated: 2 bytes where frame 0's length"),
        (BUNDLE_MAGIC + struct.pack("<I", 10) + b"{}", "frame 0 says 10 bytes, 2 remain"),
        (encode_bundle([b"{}"]) + struct.pack("<I", 0), "frame 1 is empty"),
        (b"{not a bundle}", "no RSB1 magic"),
    ])
    def test_bad_bundles_are_schema_errors_with_reasons(self, raw, reason):
        with pytest.raises(SchemaError, match=reason):
            split_bundle(raw)

    def test_an_empty_bundle_cannot_be_built(self):
        with pytest.raises(ValueError):
            encode_bundle([])


class TestRouting:
    def test_partition_of_is_the_default_partitioner_of_a_keyed_frame(self):
        """A vehicle's bundled frames go where its plain frames (key = vehicle id) go."""

        class Cluster:  # the three questions kafka-python's partitioner asks its metadata
            def __init__(self, n):
                self.n = n

            def topics(self):
                return {"t"}

            def partitions_for_topic(self, topic):
                return set(range(self.n))

            available_partitions_for_topic = partitions_for_topic

        rng = random.Random(7)
        for n in (1, 2, 4, 7, 12):
            for _ in range(200):
                vid = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ0123456789") for _ in range(17))
                want = DefaultPartitioner().partition("t", vid, vid.encode(), b"", b"", Cluster(n))
                assert partition_of(vid, n) == want

    def test_java_client_reference_values(self):
        # murmur2 of the Java client's own test (org.apache.kafka.common.utils.UtilsTest),
        # made positive and taken modulo the partitions as its default partitioner does
        for key, h in (("21", -973932308), ("foobar", -790332482)):
            for n in (3, 4, 10):
                assert partition_of(key, n) == (h & 0x7FFFFFFF) % n


class TestBundler:
    def test_bundles_hold_one_partition_each_keep_order_and_lose_nothing(self):
        rng = random.Random(3)
        vehicles = [f"VF1{i:014d}" for i in range(40)]
        seqs = dict.fromkeys(vehicles, 0)
        b = Bundler(4, size=5, wait_s=1e9)
        sent, added = [], 0
        for _ in range(600):
            v = rng.choice(vehicles)
            sent += b.add(v, _frame(v, seqs[v]), 0.0)
            seqs[v] += 1
            added += 1
        sent += b.drain()
        assert b.drain() == []
        got: dict[str, list[int]] = {}
        for p, raw, _ in sent:
            frames = [orjson.loads(f) for f in split_bundle(raw)]
            assert 1 <= len(frames) <= 5
            assert {partition_of(f["vehicle_id"], 4) for f in frames} == {p}
            for f in frames:
                got.setdefault(f["vehicle_id"], []).append(f["seq"])
        assert sum(map(len, got.values())) == added
        assert all(s == list(range(seqs[v])) for v, s in got.items())

    def test_a_bundle_never_passes_the_byte_limit(self):
        frame = _frame("VF1AAAAAAAAAAAAAA")
        limit = 4 + 3 * (4 + len(frame))
        b = Bundler(1, size=100, max_bytes=limit)
        out = [x for _ in range(10) for x in b.add("VF1AAAAAAAAAAAAAA", frame, 0.0)] + b.drain()
        assert [len(split_bundle(raw)) for _, raw, _ in out] == [3, 3, 3, 1]
        assert all(len(raw) <= limit for _, raw, _ in out)

    def test_an_unfilled_bundle_leaves_after_its_wait(self):
        b = Bundler(2, size=10, wait_s=1.0)
        assert b.next_due() == float("inf")
        assert b.add("A", _frame("A"), 10.0) == []
        assert b.next_due() == 11.0
        assert b.due(10.9) == []
        assert b.add("A", _frame("A", 1), 10.5) == []
        (p, raw, t0), = b.due(11.0)
        assert p == partition_of("A", 2) and split_bundle(raw) == [_frame("A"), _frame("A", 1)]
        assert t0 == 10.0  # the first frame's arrival: the record's timestamp
        assert b.drain() == []


@pytest.fixture(scope="module")
def handler():
    return FrameHandler(net=load_network(), pseudonymise=Pseudonymiser("k" * 40))


class TestHandlerRoute:
    def test_a_bundled_frame_on_its_vehicles_partition_is_processed(self, handler):
        p = partition_of("VF1AAAAAAAAAAAAAA", 4)
        out = handler.handle(_frame("VF1AAAAAAAAAAAAAA"), lambda k: None, route=(p, 4))
        assert out.dead_letter is None and out.state is not None

    def test_a_misrouted_bundled_frame_is_a_dead_letter(self, handler):
        p = partition_of("VF1AAAAAAAAAAAAAA", 4)
        out = handler.handle(_frame("VF1AAAAAAAAAAAAAA"), lambda k: None, route=((p + 1) % 4, 4))
        assert out.state is None
        assert out.dead_letter == ("RoutingError", f"bundled frame of a vehicle of partition {p} arrived on "
                                                   f"partition {(p + 1) % 4} (of 4)")


class TestCommandLine:
    @pytest.mark.parametrize("value, message", [("-1", "must be 0 (plain frames) or more"),
                                                ("ten", "not a whole number")])
    def test_a_bad_bundle_size_is_a_clear_usage_error(self, capsys, value, message):
        from pipeline.cli import build_parser

        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["replay", "traces", "--bundle", value])
        assert exc.value.code == 2 and message in capsys.readouterr().err

    def test_replay_and_demo_bundle_by_default_and_zero_means_plain_frames(self):
        from pipeline.cli import build_parser
        from schemas.bundle import DEFAULT_BUNDLE_FRAMES

        p = build_parser()
        assert p.parse_args(["replay", "t"]).bundle == DEFAULT_BUNDLE_FRAMES == p.parse_args(["demo"]).bundle
        assert p.parse_args(["replay", "t", "--bundle", "0"]).bundle == 0


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    from simulator import simulate_fleet, write_fleet

    fleet = simulate_fleet(load_network(), n_vehicles=4, seed=3, trip_km=(0.4, 0.6), departure_spread_s=20)
    return write_fleet(fleet, tmp_path_factory.mktemp("fleet"), format="parquet")


class TestPacedReplay:
    def test_unfilled_bundles_leave_after_their_wait_and_nothing_is_lost(self, traces, replay_producer):
        from simulator import replay as rp

        producer = replay_producer(3)
        res = rp.replay([traces], "unused:9092", "t", frame_s=2.0, speedup=40.0, progress=False, bundle=50,
                        bundle_wait_s=0.1)
        frames = [(decode_frame(f), p) for _, key, raw, p, _ in producer.sent for f in split_bundle(raw)]
        assert all(key is None for _, key, _, _, _ in producer.sent)
        assert len(frames) == res.frames and len(producer.sent) == res.messages < res.frames
        assert all(partition_of(f.vehicle_id, 3) == p for f, p in frames)
        # paced at 40x, a 50-frame bundle never fills: each leaves once its first frame has
        # waited 0.1 s (plus the sleep's and the encoding's slack), stamped with that arrival
        late = [t - ts / 1000 for t, _, _, _, ts in producer.sent[:-3]]
        assert min(late) >= 0.1 - 1e-3 and max(late) < 0.1 + 0.25
