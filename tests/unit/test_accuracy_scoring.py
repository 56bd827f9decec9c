"""How ``bench/accuracy_roughness.py`` scores pothole alerts against the simulator's truth."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import accuracy_roughness as bench  # noqa: E402


@dataclass
class _Alert:
    segment_id: str
    position_m: float
    confidence: float = 0.9


class _Net:
    def __init__(self, ids: list[str]) -> None:
        self._ids = ids

    def index_of(self, segment_id: str) -> int:
        return self._ids.index(segment_id)


def _truth() -> dict:
    # segment s1 (class B): two holes; s2 (class D): two holes and a hump; s3: too few passes
    return {
        "segment_id": ["s1", "s1", "s2", "s2", "s2", "s3"],
        "kind": ["pothole", "pothole", "pothole", "pothole", "speed_bump", "pothole"],
        "offset_m": [20.0, 80.0, 30.0, 90.0, 60.0, 40.0],
        "contrast": [40.0, 25.0, 12.0, 6.0, float("nan"), 30.0],
    }


def _score(alerts: list[_Alert]) -> dict:
    net = _Net(["s1", "s2", "s3"])
    return bench._evaluate_network_potholes(_truth(), alerts, {"s1": 9, "s2": 7, "s3": 2}, 5, ["B", "D", "A"], net)


def test_recall_is_split_by_the_iso_class_of_the_holes_road():
    ph = _score([_Alert("s1", 21.0), _Alert("s1", 79.0), _Alert("s2", 33.0), _Alert("s2", 61.0)])
    # s3's hole is on a segment with fewer than 5 passes: not counted in any class
    assert ph["found_by_class"] == {"B": [2, 2], "D": [1, 2]}
    assert ph["recall"] == 0.75 and ph["false_potholes_at_bumps"] == 1


def test_pooled_recall_by_class_sums_the_seeds():
    a = _score([_Alert("s1", 21.0), _Alert("s2", 90.0)])
    b = _score([_Alert("s1", 21.0), _Alert("s1", 80.0), _Alert("s2", 30.0), _Alert("s2", 90.0)])
    pooled = bench._by_class([a["found_by_class"], b["found_by_class"]])
    assert pooled["n_true_potholes_by_class"] == {"B": 4, "D": 4}
    assert pooled["pothole_recall_by_class"] == {"B": 0.75, "D": 0.75}


def test_alerts_are_labelled_for_the_calibration_of_their_confidence():
    ph = _score([_Alert("s1", 21.0, 0.9), _Alert("s2", 61.0, 0.6), _Alert("s2", 150.0, 0.2)])
    assert sorted(ph["confidence_real"]) == [(0.2, False), (0.6, False), (0.9, True)]
    cal = bench._calibration(ph["confidence_real"])
    assert cal["brier"] == pytest.approx((0.1**2 + 0.6**2 + 0.2**2) / 3)
    # bins [0, 0.5), [0.5, 0.7), [0.9, 0.95): each off by its own gap, weighted by its alerts
    assert cal["ece"] == pytest.approx((0.2 + 0.6 + 0.1) / 3)
    assert [b[:3] for b in cal["bins"]] == [[0.0, 0.5, 1], [0.5, 0.7, 1], [0.9, 0.95, 1]]


def test_a_perfectly_calibrated_confidence_has_no_calibration_error():
    pairs = [(0.75, True)] * 3 + [(0.75, False)] + [(1.0, True)] * 4
    cal = bench._calibration(pairs)
    assert cal["ece"] == pytest.approx(0.0) and cal["brier"] == pytest.approx(3 * 0.25**2 / 8 + 0.75**2 / 8)
    assert np.isnan(bench._calibration([])["brier"])
