"""NumPy's median and (linear) percentile of a short list of floats, in plain Python.

For the dozen values a pass's windows or a fix's residuals give, most of what
``np.median`` and ``np.percentile`` cost (30-50 µs a call on the development VM) is their
per-call machinery; sorting a short list takes a microsecond. The results are NumPy's to
the bit, NaN in giving NaN out (``tests/unit/test_order_stats.py`` compares them). Not
covered: infinite values, and the sign of a zero result when the values hold both 0.0 and
-0.0 (which of the equal zeros NumPy's partition puts in the middle is its own business).
Neither occurs where they are used: window powers and speeds, residuals of a fix.
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["median", "percentile"]


def median(x: Sequence[float]) -> float:
    """``np.median`` of a non-empty sequence of finite floats (or NaN)."""
    s = sorted(x)
    n = len(s)
    if any(map(math.isnan, s)):
        return math.nan
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def percentile(x: Sequence[float], q: float) -> float:
    """``np.percentile(x, q)`` (method "linear"; ``q`` in percent, 0..100) of a non-empty
    sequence of finite floats (or NaN)."""
    s = sorted(x)
    n = len(s)
    if any(map(math.isnan, s)):
        return math.nan
    v = (n - 1) * (q / 100)  # NumPy's virtual index for "linear"
    if v >= n - 1:
        return s[-1]
    lo = math.floor(v)
    t = v - lo
    a, b = s[lo], s[lo + 1]
    d = b - a
    # NumPy's _lerp: from the nearer end, so that t = 1 gives b exactly
    return b - d * (1 - t) if t >= 0.5 else a + d * t
