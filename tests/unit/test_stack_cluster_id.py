"""The local stack's KRaft cluster id (pipeline.stack)."""

import uuid

from pipeline import stack


def test_a_new_cluster_id_never_starts_with_a_dash(monkeypatch):
    # 0xF8: the first base64 character is "-" (62), which kafka-storage read as an option
    ids = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" + bytes(15))])
    monkeypatch.setattr(stack.uuid, "uuid4", lambda: next(ids))
    cid = stack._new_cluster_id()
    assert cid == "AQAAAAAAAAAAAAAAAAAAAA"


def test_the_cluster_id_is_kept_in_the_stack_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ROADSENSE_STACK_DIR", str(tmp_path))
    (tmp_path / "kafka").mkdir()
    first = stack._kafka_cluster_id()
    assert stack._kafka_cluster_id() == first
    assert (tmp_path / "kafka" / "cluster-id").read_text() == first + "\n"
    assert not first.startswith("-") and len(first) == 22
