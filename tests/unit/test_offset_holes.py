"""The tripwire on records the consumer skipped (pipeline.offset_holes)."""

from pipeline.offset_holes import OffsetHoles, split_expired

TP = ("vehicle.frames", 2)


def _holes(*steps) -> list:
    """Run ``("seek", committed, gen)`` and ``(offset, gen)`` steps; the holes reported."""
    h, out = OffsetHoles(), []
    for step in steps:
        if step[0] == "seek":
            h.sought(TP, step[1], step[2])
        else:
            out.append(h.handled(TP, *step))
    return [x for x in out if x is not None]


def test_records_in_order_from_the_committed_offset_leave_no_hole():
    assert _holes(("seek", 5, 1), (5, 1), (6, 1), (7, 1)) == []


def test_the_record_at_the_committed_offset_dropped_is_a_hole():
    # the eighteenth session's loss: the seek's first record never reached the agent
    assert _holes(("seek", 9, 2), (10, 2), (11, 2)) == [(9, 9)]


def test_a_record_dropped_between_two_handled_is_a_hole():
    assert _holes(("seek", 5, 1), (5, 1), (6, 1), (9, 1), (10, 1)) == [(7, 8)]


def test_records_that_come_again_after_a_seek_are_not_holes():
    # handled up to 8, then sought back to the committed 5 in the same generation: the
    # duplicates 5..8, then 9, and the stale 9, 10 fetched before the seek are all in order
    assert _holes(("seek", 5, 1), (5, 1), (6, 1), (7, 1), (8, 1), ("seek", 5, 1), (9, 1), (5, 1), (6, 1), (10, 1)) == []


def test_a_new_generation_starts_from_its_own_seek():
    # another worker handled 8..19 meanwhile: the new generation's seek says so
    assert _holes(("seek", 5, 1), (5, 1), (6, 1), (7, 1), ("seek", 20, 2), (20, 2), (21, 2)) == []
    assert _holes(("seek", 5, 1), (5, 1), ("seek", 20, 2), (22, 2)) == [(20, 21)]


def test_without_a_committed_offset_the_first_record_is_the_baseline():
    # a new group starts at the log's first offset, which retention may have moved
    assert _holes(("seek", None, 1), (40, 1), (41, 1), (43, 1)) == [(42, 42)]
    assert _holes((40, 3), (41, 3)) == []


def test_partitions_are_independent():
    h = OffsetHoles()
    h.sought(("t", 0), 5, 1)
    h.sought(("t", 1), 50, 1)
    assert h.handled(("t", 1), 50, 1) is None
    assert h.handled(("t", 0), 5, 1) is None
    assert h.handled(("t", 0), 7, 1) == (6, 6)


def test_a_hole_below_the_log_start_was_deleted_by_the_broker_not_dropped():
    # committed 100, retention deleted up to 149: the fetcher resets to 150
    assert split_expired((100, 149), 150) == ((100, 149), None)


def test_a_hole_above_the_log_start_was_dropped():
    assert split_expired((100, 149), 0) == (None, (100, 149))
    assert split_expired((100, 149), 100) == (None, (100, 149))


def test_a_hole_across_the_log_start_is_split_there():
    # the records from the log start on were there to read: those were dropped
    assert split_expired((100, 149), 120) == ((100, 119), (120, 149))
    assert split_expired((100, 149), 149) == ((100, 148), (149, 149))


def test_the_offsets_handled_in_an_earlier_generation_are_remembered_for_the_log():
    h = OffsetHoles()
    assert h.earlier(TP) is None
    h.sought(TP, 3, 1)
    for off in (3, 4, 5):
        h.handled(TP, off, 1)
    assert h.earlier(TP) is None  # still generation 1
    h.sought(TP, 5, 2)  # the rebalance: 5 was handled, not committed
    assert h.handled(TP, 6, 2) == (5, 5)
    assert h.earlier(TP) == (1, 5)
    # a generation in which nothing was handled does not hide the one before it
    h.sought(TP, 7, 3)
    h.sought(TP, 7, 4)
    assert h.earlier(TP) == (2, 6)


def test_records_handled_before_the_seek_above_the_committed_offset_are_a_hole():
    # the fetcher ran before the generation's seek, with a stale read offset: 6..85 were
    # dropped as read and 86 handed over; the seek then says 6 is where the group is
    assert _holes((86, 2), (87, 2), ("seek", 6, 2), (88, 2)) == [(6, 85)]
    # reported once, with the next record
    assert _holes((86, 2), ("seek", 6, 2), (87, 2), (88, 2), (6, 2)) == [(6, 85)]


def test_records_handled_before_the_seek_from_the_committed_offset_are_no_hole():
    assert _holes((6, 2), (7, 2), ("seek", 6, 2), (8, 2), (6, 2), (7, 2)) == []
    # only the generation's first seek looks back at what came before it
    assert _holes(("seek", 6, 2), (6, 2), (7, 2), ("seek", 3, 2), (8, 2)) == []
