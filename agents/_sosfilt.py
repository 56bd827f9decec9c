"""``scipy.signal.sosfilt`` for one 1-D float64 signal with its state, without the
wrapper's per-call cost.

Stage 1 filters a few hundred samples per call, several times per frame; scipy's wrapper
(input checks, ``moveaxis``, copies, about 60 µs a call) cost more than the filtering.
:func:`sosfilt` calls the compiled kernel scipy's own ``sosfilt`` calls, on the same arrays
it would build, so the output is the same to the bit (``tests/unit/test_sosfilt.py``). The
kernel is scipy's private ``_sosfilt``: scipy is pinned exactly, and if a release moves it
this module falls back to the public function. :func:`sosfilt_zi` is
``scipy.signal.sosfilt_zi`` computed once per filter design.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

try:  # the kernel behind scipy.signal.sosfilt (scipy 1.17)
    from scipy.signal._sosfilt import _sosfilt as _kernel
except ImportError:  # pragma: no cover - another scipy layout: the public path
    _kernel = None

__all__ = ["sosfilt", "sosfilt_zi"]

_ZI: dict[bytes, np.ndarray] = {}


def sosfilt(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Filter ``x`` along its last axis with second-order sections ``sos`` (k, 6).

    ``x`` is (n,) with ``zi`` (k, 2), or (m, n) with ``zi`` (k, m, 2): the shapes of
    ``scipy.signal.sosfilt(sos, x, axis=-1, zi=zi)``, which this returns the same
    ``(y, zf)`` as. Inputs are not modified.
    """
    x = np.asarray(x)
    if x.shape[-1] == 0:  # scipy refuses an empty signal; the state passes through
        return np.zeros(x.shape), np.array(zi, dtype=np.float64)
    if _kernel is None or x.ndim > 2:
        return signal.sosfilt(sos, x, axis=-1, zi=zi)
    two = x.ndim == 2
    y = np.array(x, dtype=np.float64, order="C").reshape(-1, x.shape[-1])
    zi = np.asarray(zi, dtype=np.float64)
    # the kernel's layout (signals, sections, 2), in a copy: the kernel writes into it
    z = np.array(zi.transpose(1, 0, 2) if two else zi.reshape(1, -1, 2), order="C")
    _kernel(np.ascontiguousarray(sos, dtype=np.float64), y, z)
    if two:
        return y, np.ascontiguousarray(z.transpose(1, 0, 2))
    return y.reshape(-1), z.reshape(-1, 2)


def sosfilt_zi(sos: np.ndarray) -> np.ndarray:
    """``scipy.signal.sosfilt_zi(sos)`` (k, 2), computed once per design (a copy each call).

    Every trip's first frame starts each of stage 1's filters at rest on its first value,
    and scipy solves a linear system per section for it (about 0.2 ms a filter); the
    designs are the same few for every vehicle, so the answer is kept, the same bits.
    """
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    key = repr(sos.shape).encode() + sos.tobytes()
    zi = _ZI.get(key)
    if zi is None:
        if len(_ZI) >= 64:  # designs come from a handful of sample rates; bound it anyway
            _ZI.clear()
        zi = _ZI[key] = signal.sosfilt_zi(sos)
    return zi.copy()
