"""Offsets of a partition that the consumer skipped: a tripwire on Faust's delivery.

Within one consumer-group generation, a partition's records reach the agent in offset
order, from the committed offset its seek returned; after a seek they may come again
(duplicates). So the next record may be at most one above the highest offset handled
so far, or at the committed offset of the latest seek, whichever is higher. A record
above that means the ones in between were fetched and dropped without being handled:
Faust then commits past them if they are a single record (``Consumer._new_offset``
accepts acknowledged offsets that start one above the committed offset), which is how the
eighteenth session's two-worker run lost 27 passes (docs/decisions.md, "A record dropped
between the seek and the resume"). The worker logs such a hole, counts it and, by default
(``offset_holes="stop"``), stops before the record that revealed it is handled or
acknowledged: the hole cannot have been committed past, so a restarted worker reads it
again, in order.

Two kinds of hole are not a drop, and a restart would not fill them:

* records the broker deleted (retention) before the group read them: the fetcher then
  jumps to the log's first offset. :func:`split_expired` tells them apart with that offset;
  they are logged and counted as ``offsets_expired``;
* the markers of a transactional producer. The pipeline's topics are written by plain
  producers (the simulator's replay, a gateway, the workers themselves); a deployment whose
  gateway writes transactions sets ``offset_holes="log"``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OffsetHoles", "split_expired"]


@dataclass(slots=True)
class _Partition:
    generation: int
    floor: int | None = None  # committed offset at the latest seek (None: nothing committed)
    last: int | None = None  # highest offset handled in this generation
    before: tuple[int, int] | None = None  # (generation, highest offset) of the latest earlier one
    first: int | None = None  # first offset handled in this generation
    sought: bool = False  # this generation's seek happened
    skipped: tuple[int, int] | None = None  # a hole found at the seek, reported with the next record


class OffsetHoles:
    """Per ``(topic, partition)``: where the next record may be, in the current generation."""

    def __init__(self) -> None:
        self._parts: dict[tuple[str, int], _Partition] = {}

    def _current(self, tp: tuple[str, int], generation: int) -> _Partition:
        p = self._parts.get(tp)
        if p is None or p.generation != generation:
            before = None if p is None else ((p.generation, p.last) if p.last is not None else p.before)
            p = self._parts[tp] = _Partition(generation, before=before)
        return p

    def sought(self, tp: tuple[str, int], committed: int | None, generation: int) -> None:
        """The partition was sought to ``committed`` (None or 0: no committed offset)."""
        p = self._current(tp, generation)
        if not p.sought and committed and p.first is not None and p.first > committed:
            # records reached the agent before this generation's seek, starting above the
            # committed offset: the ones below were skipped (docs/decisions.md, "Streams
            # resumed after their seek"); the next record reports them
            p.skipped = (committed, p.first - 1)
        p.sought = True
        p.floor = committed or None

    def handled(self, tp: tuple[str, int], offset: int, generation: int) -> tuple[int, int] | None:
        """Record ``offset`` reached the agent; returns the skipped offsets ``(first, last)``
        before it, or None."""
        # not sought in this generation (no record of its seek): this record is the baseline
        p = self._current(tp, generation)
        if p.first is None:
            p.first = offset
        expected = p.floor if p.last is None else max(p.last + 1, p.floor or 0)
        p.last = offset if p.last is None else max(p.last, offset)
        if p.skipped is not None:
            hole, p.skipped = p.skipped, None
            return hole
        if expected is not None and offset > expected:
            return expected, offset - 1
        return None

    def earlier(self, tp: tuple[str, int]) -> tuple[int, int] | None:
        """``(generation, offset)``: the highest offset of ``tp`` this worker handled in the
        latest earlier generation in which it handled any, or None. Logged with a hole, it
        tells a record never handed over (the hole is above it) from one handed over in
        the previous generation and again, after the new seek, out of order (it is not)."""
        p = self._parts.get(tp)
        return None if p is None else p.before


def split_expired(hole: tuple[int, int], log_start: int) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """``hole`` (first, last offset) split at the partition's first offset still on the
    broker: ``(expired, dropped)``, the part the broker deleted and the part that was there
    to read (either None when empty)."""
    first, last = hole
    expired = (first, min(last, log_start - 1)) if first < log_start else None
    dropped = (max(first, log_start), last) if last >= log_start else None
    return expired, dropped
