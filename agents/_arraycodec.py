"""Lossless, compact byte encoding of the numeric arrays of a stored state.

A vehicle's state is written with every frame; most of it is arrays of times, distances,
indices and sums. This module writes each array as a *record*

    dtype code (u8), transform (u8), parameter (u8), integer width (u8), ndim (u8),
    shape (u32 each), payload

whose transform is chosen from the caller's *hint* and **checked**: a transform is used
only when it gives back, bit for bit, the array it was given (NaN, inf, -0.0 included);
otherwise the raw bytes are written. So a restored state always equals the running
one, and a wrong hint can only cost bytes, never change a value. (Differences of
integers wrap around in 64 bits, which cumulative sums undo exactly; the float
transforms recompute the floats from the integers and compare.)

Transforms (by hint)
--------------------
``raw``
    The array's own bytes.
``shuffle``
    The bytes *byte-shuffled* (all first bytes, then all second bytes, ...):
    neighbouring values that share their sign, exponent and high mantissa bytes then
    give zstd runs to find. It helps float32 sums and small integers in wide types; it
    hurts float64 values of unrelated magnitudes (the matcher's candidates), which stay
    ``raw``: chosen per array on measured sizes (docs/decisions.md).
``int0``, ``int1``, ``int2``
    Integer values (of an integer dtype, or integer-valued floats such as sample
    counts), differenced 0, 1 or 2 times (the leading values in 64 bits), in the
    narrowest of 1, 2, 4 or 8 bytes that holds every difference, shuffled. A sample
    index (1, 2, 3, ...) becomes a run of ones.
``dec``, ``dec2``
    float64 values that are exactly ``k / 10**p`` for ``p`` = 2, 3 or 6 (correctly
    rounded division: the nearest double to a decimal with ``p`` digits, as a JSON
    timestamp decodes to): stored as the integers ``k``, differenced once or twice.
``um``, ``um2``
    float64 values that are exactly ``k * 1e-6`` as NumPy computes it (the trip
    odometer: integer micrometres times ``1e-6``): stored as ``k``.
``bits``, ``bits2``
    float64 or float32 values as their IEEE bit patterns, differenced: for a smooth
    sequence of one sign and binade the patterns move slowly, and the high bytes of the
    differences are zeros.

The integer transforms (the checks, the differences, the width, the shuffle) are numba
kernels: a state writes some thirty records per frame, and as NumPy calls on short arrays
they were 0.17 ms of it. They write the bytes the NumPy formulation wrote
(``tests/unit/test_arraycodec.py`` keeps it as the oracle).
"""

from __future__ import annotations

import math
import struct

import numba
import numpy as np

__all__ = ["put", "get", "ArrayCodecError", "compile_kernels"]

_DTYPES = ("<f8", "<f4", "<i8", "<i4", "<i2", "|i1", "|u1", "|b1")
_CODE = {np.dtype(d): i for i, d in enumerate(_DTYPES)}
_DT = {d: np.dtype(d) for d in _DTYPES}
_NONE = 255
_PLAIN, _INT, _DEC, _MUL, _BITS, _SHUF = 0, 1, 2, 3, 4, 5
_INT_DT = {1: np.dtype("|i1"), 2: np.dtype("<i2"), 4: np.dtype("<i4"), 8: np.dtype("<i8")}
_HEAD = struct.Struct("<BBBBB")
_NONE_RECORD = bytes([_NONE, 0, 0, 0, 0])
_I8 = np.dtype("<i8")
_BITS_INT = {8: _I8, 4: np.dtype("<i4")}  # float width -> integer of its bit pattern


class ArrayCodecError(ValueError):
    """Bytes that are not an array record of this module (truncated, unknown code)."""


def _shuffle(b: np.ndarray) -> bytes:
    """Bytes of a 1-D contiguous array, byte-shuffled when its items are wider than one byte."""
    w = b.dtype.itemsize
    if w == 1 or b.size < 2:
        return b.tobytes()
    return b.view(np.uint8).reshape(b.size, w).T.tobytes()


def _unshuffle(raw: bytes | memoryview, dtype: np.dtype, n: int) -> np.ndarray:
    w = dtype.itemsize
    u = np.frombuffer(raw, np.uint8, count=n * w)
    if w == 1 or n < 2:
        return u.view(dtype).copy()
    return np.ascontiguousarray(u.reshape(w, n).T).view(dtype).reshape(n)


def _undiff(heads: np.ndarray, d: np.ndarray) -> np.ndarray:
    k = d.astype(_I8)
    for h in heads[::-1]:
        k = np.concatenate([[h], k])
        np.cumsum(k, out=k)
    return k


@numba.njit(cache=True)
def _int_payload_kernel(k: np.ndarray, order: int) -> tuple[int, int, np.ndarray]:
    # the leading values, then the order-th differences (int64 arithmetic wraps around, and
    # _undiff's cumulative sums wrap back: exact for any values) in the narrowest width
    # that holds them, byte-shuffled; little-endian bytes of two's complement throughout
    order = min(order, k.size)
    d = k.copy()
    heads = np.empty(order, np.int64)
    m = k.size
    for o in range(order):
        heads[o] = d[0]
        for i in range(m - 1):
            d[i] = d[i + 1] - d[i]
        m -= 1
    w = 1
    if m:
        lo, hi = d[0], d[0]
        for i in range(1, m):
            lo, hi = min(lo, d[i]), max(hi, d[i])
        if not (-128 <= lo and hi < 128):
            w = 2 if -32768 <= lo and hi < 32768 else 4 if -2147483648 <= lo and hi < 2147483648 else 8
    out = np.empty(8 * order + w * m, np.uint8)
    for o in range(order):
        for b in range(8):
            out[8 * o + b] = (heads[o] >> (8 * b)) & 0xFF
    pos = 8 * order
    if w == 1 or m < 2:  # one byte per value, or one value: nothing to shuffle
        for i in range(m):
            for b in range(w):
                out[pos + w * i + b] = (d[i] >> (8 * b)) & 0xFF
    else:  # every value's first byte, then every second byte, ...
        for b in range(w):
            for i in range(m):
                out[pos + b * m + i] = (d[i] >> (8 * b)) & 0xFF
    return order, w, out


def _int_payload(k: np.ndarray, order: int) -> tuple[int, int, bytes]:
    """(order, width, payload) of int64 values: the leading ``order`` values, then the
    ``order``-th differences in the narrowest of 1, 2, 4 or 8 bytes, shuffled (compiled;
    the bytes of the NumPy formulation, ``tests/unit/test_arraycodec.py``)."""
    o, w, out = _int_payload_kernel(k, order)
    return o, w, out.tobytes()


@numba.njit(cache=True)
def _float_ints(a: np.ndarray) -> tuple[bool, np.ndarray]:
    k = np.empty(a.size, np.int64)
    for i in range(a.size):
        if not abs(a[i]) < 2.0**53:  # also false for NaN: the cast would be undefined
            return False, k
        k[i] = np.int64(a[i])
    back = k.astype(a.dtype)  # bit for bit: -0.0 comes back as 0.0 and fails
    return np.array_equal(back.view(np.uint8), a.view(np.uint8)), k


@numba.njit(cache=True)
def _scaled_kernel(a: np.ndarray, s: float, neg: float, mul: bool) -> tuple[bool, np.ndarray]:
    k = np.empty(a.size, np.int64)
    for i in range(a.size):
        x = np.rint(a[i] * s)
        if not abs(x) < 2.0**53:  # NaN and inf fail here: their cast would be undefined
            return False, k
        k[i] = np.int64(x)
        back = np.float64(k[i]) * neg if mul else np.float64(k[i]) / s
        # bit for bit (neither is NaN): equal, and -0.0 comes back as 0.0 and fails. At
        # the first value off the grid: the speeds a "dec" hint tries three grids for
        if back != a[i] or math.copysign(1.0, back) != math.copysign(1.0, a[i]):
            return False, k
    return True, k


@numba.njit(cache=True)
def _scaled_payload_kernel(a: np.ndarray, scales: np.ndarray, negs: np.ndarray, mul: bool,
                           order: int) -> tuple[int, int, int, np.ndarray]:
    # the first of the decimal scales that gives ``a`` back, and the int payload of its
    # integers, in one call (a state writes a dozen such records per frame)
    for i in range(scales.size):
        ok, k = _scaled_kernel(a, scales[i], negs[i], mul)
        if ok:
            o, w, out = _int_payload_kernel(k, order)
            return i, o, w, out
    return -1, 0, 0, np.empty(0, np.uint8)


@numba.njit(cache=True)
def _float_int_payload_kernel(a: np.ndarray, order: int) -> tuple[bool, int, int, np.ndarray]:
    # _float_ints, then the int payload of the integers, in one call
    ok, k = _float_ints(a)
    if not ok:
        return False, 0, 0, np.empty(0, np.uint8)
    o, w, out = _int_payload_kernel(k, order)
    return True, o, w, out


def _int_values(raw: memoryview, order: int, w: int, n: int) -> tuple[np.ndarray, int]:
    """int64 values of an ``int`` payload of ``n`` values, and the payload's length."""
    order = min(order, n)
    pos = 8 * order
    m = n - order
    if len(raw) < pos + m * w:
        raise ArrayCodecError("array record truncated")
    heads = np.frombuffer(raw, _I8, count=order)
    d = _unshuffle(raw[pos : pos + m * w], _INT_DT[w], m)
    return _undiff(heads, d), pos + m * w


_POW10 = {p: 10.0**p for p in range(10)}
_NEG_POW10 = {p: float(f"1e-{p}") for p in range(10)}  # the literal 1e-6, as in ``d_um * 1e-6``
# hint -> (transform, difference order, decimal digits to try)
_HINTS: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "raw": (_PLAIN, 0, ()), "shuffle": (_SHUF, 0, ()), "int0": (_INT, 0, ()), "int1": (_INT, 1, ()), "int2": (_INT, 2, ()),
    "dec": (_DEC, 1, (2, 3, 6)), "dec2": (_DEC, 2, (2, 3, 6)), "um": (_MUL, 1, (6,)), "um2": (_MUL, 2, (6,)),
    "bits": (_BITS, 1, ()), "bits2": (_BITS, 2, ()),
}
_DIMS = {n: struct.Struct(f"<{n}I") for n in range(4)}
_SCALES = {d: (np.array([_POW10[p] for p in d]), np.array([_NEG_POW10[p] for p in d])) for _, _, d in _HINTS.values()}
"""The decimal digits of each hint as the kernel's scales: ``k / 10**p`` (and ``k * 1e-p``)."""


def compile_kernels() -> None:
    """Compile the transforms' numba kernels for every dtype they take, or load them from
    numba's cache: see :func:`agents.passes.compile_kernels`."""
    for dtype in ("<f8", "<f4"):
        put([], np.array([1.0, 2.0]), dtype, "int1")
    put([], np.array([0.25, 0.5]), "<f8", "dec")
    put([], np.array([1, 2]), "<i8", "int1")


def put(out: list[bytes], a: np.ndarray | None, dtype: str, hint: str = "raw") -> None:
    """Append the record of ``a`` (converted to ``dtype``; None allowed) to ``out``, as
    one or more pieces: the record is ``b"".join`` of what was appended.

    The conversion to ``dtype`` is the caller's decision (e.g. float64 sample counts kept
    in a few bits): it must be exact for the values it is used on. ``hint`` is one of
    the module docstring's; a hint that does not fit the values gives the plain bytes.
    """
    if a is None:
        out.append(_NONE_RECORD)
        return
    # a state writes some thirty records per frame: the lookups are made once per
    # (dtype, hint), header and shape are packed in one call (the bytes of the form it
    # replaced, tests/unit/test_arraycodec.py)
    plan = _PLANS.get((dtype, hint)) or _plan(dtype, hint)
    dt, code, tf, order, digits = plan
    b = np.ascontiguousarray(a, dtype=dt)
    flat = b if b.ndim == 1 else b.reshape(-1)
    enc = None
    if tf == _SHUF:
        enc = (_SHUF, 0, 0, _shuffle(flat))
    elif tf != _PLAIN and flat.size > 1:
        enc = _encode(flat, tf, order, digits)
    if enc is None:
        enc = (_PLAIN, 0, 0, flat.tobytes())
    tf, par, w, payload = enc
    if code is None:
        code = _CODE[dt]  # a dtype the records do not hold: KeyError, as before
    out += (_RECORD_HEAD[b.ndim].pack(code, tf, par, w, b.ndim, *b.shape), payload)


_PLANS: dict[tuple[str, str], tuple[np.dtype, int | None, int, int, tuple[int, ...]]] = {}
_RECORD_HEAD = {n: struct.Struct(f"<BBBBB{n}I") for n in range(4)}
"""A record's head and shape: ``_HEAD`` then ``_DIMS[ndim]``, in one struct."""


def _plan(dtype: str, hint: str) -> tuple[np.dtype, int | None, int, int, tuple[int, ...]]:
    """(dtype, its code, transform, difference order, decimal digits) of a ``put``."""
    try:
        tf, order, digits = _HINTS[hint]
    except KeyError:
        raise ValueError(f"unknown array hint {hint!r}") from None
    dt = _DT.get(dtype) or np.dtype(dtype)
    _PLANS[(dtype, hint)] = plan = (dt, _CODE.get(dt), tf, order, digits)
    return plan


def _encode(flat: np.ndarray, tf: int, order: int, digits: tuple[int, ...]) -> tuple[int, int, int, bytes] | None:
    """(transform, parameter, width, payload), or None when the transform does not fit."""
    if tf == _INT:
        if flat.dtype.kind in "iub":
            o, w, payload = _int_payload(flat.astype(_I8), order)
            return _INT, o, w, payload
        ok, o, w, out = _float_int_payload_kernel(flat, order)
        return (_INT, o, w, out.tobytes()) if ok else None
    if tf == _BITS:
        if flat.dtype.kind != "f":
            return None
        o, w, payload = _int_payload(flat.view(_BITS_INT[flat.dtype.itemsize]).astype(_I8), order)
        return _BITS, o, w, payload
    if flat.dtype != np.float64:
        return None
    scales, negs = _SCALES[digits]
    i, o, w, out = _scaled_payload_kernel(flat, scales, negs, tf == _MUL, order)
    return (tf, digits[i] | (o << 4), w, out.tobytes()) if i >= 0 else None


def _decode(raw: memoryview, dt: np.dtype, tf: int, par: int, w: int, n: int) -> tuple[np.ndarray, int]:
    if tf in (_PLAIN, _SHUF):
        if len(raw) < n * dt.itemsize:
            raise ArrayCodecError("array record truncated")
        if tf == _PLAIN:
            return np.frombuffer(raw, dt, count=n).copy(), n * dt.itemsize
        return _unshuffle(raw[: n * dt.itemsize], dt, n), n * dt.itemsize
    if tf == _INT:
        k, used = _int_values(raw, par, w, n)
        return k.astype(dt), used
    if tf in (_DEC, _MUL):
        p, o = par & 15, par >> 4
        k, used = _int_values(raw, o, w, n)
        return (k * _NEG_POW10[p] if tf == _MUL else k / _POW10[p]).astype(dt), used
    if tf == _BITS:
        k, used = _int_values(raw, par, w, n)
        return k.astype(_BITS_INT[dt.itemsize]).view(dt), used
    raise ArrayCodecError(f"unknown array transform {tf}")


def get(buf: memoryview, pos: int) -> tuple[np.ndarray | None, int]:
    """(array, position after its record) of the record at ``pos`` of ``buf``."""
    if pos + _HEAD.size > len(buf):
        raise ArrayCodecError("array record truncated")
    code, tf, par, w, ndim = _HEAD.unpack_from(buf, pos)
    pos += _HEAD.size
    if code == _NONE:
        return None, pos
    if code >= len(_DTYPES) or (tf not in (_PLAIN, _SHUF) and w not in _INT_DT) or ndim not in _DIMS:
        raise ArrayCodecError(f"not an array record (dtype code {code}, width {w}, {ndim} dimensions)")
    if pos + 4 * ndim > len(buf):
        raise ArrayCodecError("array record truncated")
    shape = _DIMS[ndim].unpack_from(buf, pos)
    pos += 4 * ndim
    n = int(np.prod(shape)) if ndim else 1
    a, used = _decode(buf[pos:], np.dtype(_DTYPES[code]), tf, par, w, n)
    return a.reshape(shape), pos + used
