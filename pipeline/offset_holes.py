"""Offsets of a partition that the consumer skipped: a tripwire on Faust's delivery.

Within one consumer-group generation, a partition's records reach the agent in offset
order, from the committed offset its seek returned; after a seek they may come again
(duplicates). So the next record may be at most one above the highest offset handled
so far, or at the committed offset of the latest seek, whichever is higher. A record
above that means the ones in between were fetched and dropped without being handled:
Faust then commits past them if they are a single record (``Consumer._new_offset``
accepts acknowledged offsets that start one above the committed offset), which is how the
eighteenth session's two-worker run lost 27 passes (docs/decisions.md, "A record dropped
between the seek and the resume"). The worker logs such a hole and counts it.

A topic whose producer is transactional has gaps at its markers: there, a hole is not a
loss. The frames topic is written by plain producers (the simulator's replay, a gateway).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OffsetHoles"]


@dataclass(slots=True)
class _Partition:
    generation: int
    floor: int | None = None  # committed offset at the latest seek (None: nothing committed)
    last: int | None = None  # highest offset handled in this generation


class OffsetHoles:
    """Per ``(topic, partition)``: where the next record may be, in the current generation."""

    def __init__(self) -> None:
        self._parts: dict[tuple[str, int], _Partition] = {}

    def sought(self, tp: tuple[str, int], committed: int | None, generation: int) -> None:
        """The partition was sought to ``committed`` (None or 0: no committed offset)."""
        p = self._parts.get(tp)
        if p is None or p.generation != generation:
            p = self._parts[tp] = _Partition(generation)
        p.floor = committed or None

    def handled(self, tp: tuple[str, int], offset: int, generation: int) -> tuple[int, int] | None:
        """Record ``offset`` reached the agent; returns the skipped offsets ``(first, last)``
        before it, or None."""
        p = self._parts.get(tp)
        if p is None or p.generation != generation:
            # not sought in this generation (no record of its seek): this record is the baseline
            p = self._parts[tp] = _Partition(generation)
        expected = p.floor if p.last is None else max(p.last + 1, p.floor or 0)
        p.last = offset if p.last is None else max(p.last, offset)
        if expected is not None and offset > expected:
            return expected, offset - 1
        return None
