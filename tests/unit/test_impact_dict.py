"""``agents.passes._impact_dict`` equals the asdict form it replaced, NumPy scalars included."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np

from agents.passes import _impact_dict
from agents.potholes import Impact


def _oracle(imp: Impact) -> dict:
    return {k: (x.item() if isinstance(x, np.generic) else x) for k, x in asdict(imp).items()}


def test_impact_dict_equals_asdict_form():
    imps = [
        Impact(offset_m=1.5, peak_mps2=6.0, polarity=-1, slowdown=0.9, n_lobes=3, speed_kmh=40.0, severity=7.0),
        Impact(offset_m=np.float64(2.25), peak_mps2=np.float32(3.5), polarity=np.int64(1), slowdown=1.0,
               n_lobes=np.int32(2), speed_kmh=55.0, severity=float("inf"), segment=np.int64(17), t_s=12.5,
               double_hit_m=float("nan"), n_peaks=4, kind_score=0.25, fs_hz=100.0, speed_dip=1.1, rise_mps2=-0.5),
    ]
    for imp in imps:
        got, want = _impact_dict(imp), _oracle(imp)
        assert list(got) == list(want)
        for k in want:
            assert type(got[k]) is type(want[k]), k
            assert got[k] == want[k] or (isinstance(want[k], float) and math.isnan(want[k]) and math.isnan(got[k])), k
