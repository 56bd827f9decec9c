"""agents._arraycodec: every record reads back bit for bit, whatever the hint."""

from __future__ import annotations

import numpy as np
import pytest

from agents import _arraycodec as codec

RNG = np.random.default_rng(0)
T = np.round((1.7e9 + np.arange(200) * 0.2) * 100) / 100  # decimal timestamps, as a frame's JSON gives
UM = np.cumsum(RNG.integers(3_000_000, 4_000_000, 200)) * 1e-6  # odometer: micrometres x 1e-6
HINTS = ["raw", "shuffle", "int0", "int1", "int2", "dec", "dec2", "um", "um2", "bits", "bits2"]
# (array, stored dtype), one comment per row
CASES = [
    (T, "<f8"),  # on the decimal grid
    (UM, "<f8"),  # on the micrometre grid
    (T + RNG.normal(0, 1e-7, T.size), "<f8"),  # off every grid
    (np.array([np.nan, 1.5, np.inf, -np.inf, -0.0, 0.0]), "<f8"),  # specials: the grids do not hold them
    (np.array([1e300, -1e300, 5e-324]), "<f8"),  # too large to scale, denormal
    (np.array([0.25, -0.0, 0.5]), "<f8"),  # on the grids but for the sign of zero
    (np.array([2.0, -0.0, 4.0], np.float32), "<f4"),  # integers but for the sign of zero
    (np.arange(50, dtype=np.int64) * 10 + 11820, "<i8"),  # a decimated sample index
    (np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max, 0, -1], np.int64), "<i8"),  # differences wrap
    (np.array([20.0, 20.0, 19.0, 20.0], np.float32), "<f4"),  # integer-valued floats (sample counts)
    (RNG.random(100).astype(np.float32), "<f4"),  # float32 sums
    (np.array([np.nan, np.float32(3.5), -np.inf], np.float32), "<f4"),
    (RNG.random((3, 7)), "<f8"),  # 2-D (filter state)
    (np.zeros(0), "<f8"),  # empty
    (np.array([42.0]), "<f8"),  # one value
    (np.array([True, False, True]), "|b1"),
    (np.arange(6, dtype=np.uint8), "|u1"),
]


def _roundtrip(a, dtype, hint):
    out: list[bytes] = []
    codec.put(out, a, dtype, hint)
    n_bytes = len(b"".join(out))
    codec.put(out, None, "<f8")
    buf = memoryview(b"".join(out))
    back, pos = codec.get(buf, 0)
    none, end = codec.get(buf, pos)
    assert none is None and end == len(buf) and pos == n_bytes
    return back, n_bytes


class TestPutGet:
    @pytest.mark.parametrize("hint", HINTS)
    @pytest.mark.parametrize("case", range(len(CASES)))
    def test_bit_for_bit(self, case, hint):
        a, dtype = CASES[case]
        back, _ = _roundtrip(a, dtype, hint)
        want = np.ascontiguousarray(a, dtype=dtype)
        assert back.dtype == want.dtype and back.shape == want.shape
        assert back.tobytes() == want.tobytes()

    @pytest.mark.parametrize("a, dtype, hint, max_bytes_per_value", [
        (T, "<f8", "dec", 1.1),  # steps of 20 centiseconds: one byte each
        (UM, "<f8", "um2", 4.1),  # second differences of micrometres fit 32 bits
        (np.arange(1000, dtype=np.int64), "<i8", "int1", 1.1),
        (np.full(100, 20.0, np.float32), "<f4", "int0", 1.1),
    ])
    def test_a_fitting_hint_is_smaller(self, a, dtype, hint, max_bytes_per_value):
        _, n_bytes = _roundtrip(a, dtype, hint)
        assert n_bytes <= max_bytes_per_value * a.size + 32
        assert n_bytes < np.dtype(dtype).itemsize * a.size

    @pytest.mark.parametrize("hint", ["dec", "um", "int1"])
    def test_a_hint_that_does_not_fit_writes_the_raw_bytes(self, hint):
        a = T + 1e-4 / 3  # neither decimal nor micrometres nor integers
        _, n_bytes = _roundtrip(a, "<f8", hint)
        assert n_bytes == 5 + 4 + 8 * a.size

    def test_read_only_input(self):
        a = T.copy()
        a.flags.writeable = False
        back, _ = _roundtrip(a, "<f8", "dec")
        assert back.tobytes() == a.tobytes() and back.flags.writeable

    def test_unknown_hint(self):
        with pytest.raises(ValueError, match="unknown array hint 'zip'"):
            codec.put([], T, "<f8", "zip")

    @pytest.mark.parametrize("cut", [1, 6, 12, 40])
    def test_truncated_record(self, cut):
        out: list[bytes] = []
        codec.put(out, T, "<f8", "dec")
        with pytest.raises(codec.ArrayCodecError):
            codec.get(memoryview(b"".join(out)[:cut]), 0)

    def test_unknown_dtype_code(self):
        with pytest.raises(codec.ArrayCodecError, match="dtype code 17"):
            codec.get(memoryview(bytes([17, 0, 0, 1, 1, 0, 0, 0, 0])), 0)


# ------------------------------------------- the compiled transforms (fifteenth session)
# The integer transforms are numba kernels; the NumPy formulation they replaced is kept
# here, unchanged but for its names, as the oracle: the records' bytes must not change.
def numpy_shuffle(b: np.ndarray) -> bytes:
    """Bytes of a 1-D contiguous array, byte-shuffled when its items are wider than one byte."""
    w = b.dtype.itemsize
    if w == 1 or b.size < 2:
        return b.tobytes()
    return b.view(np.uint8).reshape(b.size, w).T.tobytes()


def numpy_diff(k: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """(leading values, ``order``-th differences) of an int64 array. Array arithmetic wraps
    around silently, and ``_undiff``'s cumulative sums wrap back: exact for any values.
    (Slicing, not ``np.diff``: a third of the time on these short arrays.)"""
    order = min(order, k.size)
    if order == 0:
        return k[:0], k
    d = k[1:] - k[:-1]
    if order == 1:
        return k[:1], d
    return np.array([k[0], d[0]], codec._I8), d[1:] - d[:-1]


def numpy_int_payload(k: np.ndarray, order: int) -> tuple[int, int, bytes]:
    """(order, width, payload) of int64 values."""
    heads, d = numpy_diff(k, order)
    w = 1
    if d.size:
        lo, hi = d.min(), d.max()
        w = 1 if -128 <= lo and hi < 128 else 2 if -32768 <= lo and hi < 32768 else \
            4 if -2147483648 <= lo and hi < 2147483648 else 8
    return heads.size, w, heads.tobytes() + numpy_shuffle(d.astype(codec._INT_DT[w]))


def numpy_as_ints(a: np.ndarray) -> np.ndarray | None:
    """int64 of an integer array, or of a float array whose values are all integers."""
    if a.dtype.kind in "iub":
        return a.astype(codec._I8)
    if not float(np.abs(a).max()) < 2.0**53:  # also false for NaN: the cast would be undefined
        return None
    k = a.astype(codec._I8)
    return k if k.astype(a.dtype).tobytes() == a.tobytes() else None


def numpy_scaled(a: np.ndarray, p: int, mul: bool) -> np.ndarray | None:
    """Integers k with ``k / 10**p`` (or ``k * 10.0**-p``) == a bit for bit, or None."""
    s = codec._POW10[p]
    x = np.rint(a * s)
    if not np.abs(x).max() < 2.0**53:  # NaN and inf fail here: their cast would be undefined
        return None
    k = x.astype(codec._I8)
    back = k * codec._NEG_POW10[p] if mul else k / s  # from the integers: -0.0 comes back as 0.0 and fails
    return k if back.tobytes() == a.tobytes() else None


def numpy_encode(
    flat: np.ndarray, tf: int, order: int, digits: tuple[int, ...]
) -> tuple[int, int, int, bytes] | None:
    """(transform, parameter, width, payload), or None when the transform does not fit."""
    if tf == codec._INT:
        k = numpy_as_ints(flat)
        if k is None:
            return None
        o, w, payload = numpy_int_payload(k, order)
        return codec._INT, o, w, payload
    if tf == codec._BITS:
        if flat.dtype.kind != "f":
            return None
        o, w, payload = numpy_int_payload(flat.view(codec._BITS_INT[flat.dtype.itemsize]).astype(codec._I8), order)
        return codec._BITS, o, w, payload
    if flat.dtype != np.float64:
        return None
    for p in digits:
        k = numpy_scaled(flat, p, mul=tf == codec._MUL)
        if k is not None:
            o, w, payload = numpy_int_payload(k, order)
            return tf, p | (o << 4), w, payload
    return None


def _encode_cases():
    rng = np.random.default_rng(11)
    yield from (a for a, _ in CASES)
    for n in (2, 3, 7, 8, 9, 64, 300):
        yield np.round(rng.normal(0, 10.0 ** rng.integers(0, 12), n))  # integer-valued, many widths
        yield np.round(rng.normal(1e6, 5e3, n) * 1000) / 1000  # 3 decimal digits
        yield np.cumsum(rng.integers(0, 10**7, n)) * 1e-6  # micrometres
        yield rng.normal(0, 1, n).astype(np.float32)
        yield rng.integers(-(2**62), 2**62, n)  # differences that wrap
        yield rng.integers(-30000, 30000, n).astype(np.int16)
        yield np.concatenate([np.round(rng.normal(0, 100, n - 1)), [np.nan]])  # a NaN at the end


@pytest.mark.parametrize("hint", [h for h in HINTS if h not in ("raw", "shuffle")])
def test_transforms_are_the_numpy_formulation(hint):
    tf, order, digits = codec._HINTS[hint]
    seen = set()
    for a in _encode_cases():
        flat = np.ascontiguousarray(a).reshape(-1)
        if flat.size < 2:
            continue
        for dt in {flat.dtype, np.dtype("<f8")} if flat.dtype.kind == "f" else {flat.dtype}:
            f = flat.astype(dt)
            want, got = numpy_encode(f, tf, order, digits), codec._encode(f, tf, order, digits)
            assert got == want, (hint, dt, f[:4])
            seen.add(want is None)
    assert seen == {True, False}  # both outcomes: a transform that fits, one that does not


def reference_put(out: list[bytes], a: np.ndarray | None, dtype: str, hint: str = "raw") -> None:
    """``codec.put`` as first written: the oracle of its leaner form."""
    if a is None:
        out.append(codec._NONE_RECORD)
        return
    try:
        tf, order, digits = codec._HINTS[hint]
    except KeyError:
        raise ValueError(f"unknown array hint {hint!r}") from None
    dt = codec._DT.get(dtype) or np.dtype(dtype)
    b = np.ascontiguousarray(a, dtype=dt)
    flat = b.reshape(-1)
    enc = None
    if tf == codec._SHUF:
        enc = (codec._SHUF, 0, 0, codec._shuffle(flat))
    elif tf != codec._PLAIN and flat.size > 1:
        enc = codec._encode(flat, tf, order, digits)
    if enc is None:
        enc = (codec._PLAIN, 0, 0, flat.tobytes())
    tf, par, w, payload = enc
    out += (codec._HEAD.pack(codec._CODE[dt], tf, par, w, b.ndim), codec._DIMS[b.ndim].pack(*b.shape), payload)  # joined by the caller


@pytest.mark.parametrize("hint", HINTS)
def test_put_is_the_reference_put(hint):
    # put (lookups made once per dtype and hint, head and shape packed together) writes
    # the bytes of reference_put, the form it replaced
    for a in [*_encode_cases(), None, np.zeros((2, 3)), np.float64(2.5), np.arange(24.0).reshape(2, 3, 4)]:
        for dt in ("<f8", "<f4", "<i8", "<i4", "|u1") if a is not None and np.asarray(a).dtype.kind == "f" else (
                np.asarray(a).dtype.str if a is not None else "<f8",):
            with np.errstate(invalid="ignore", over="ignore"):
                if a is not None and np.asarray(a).dtype.kind == "f" and dt[1] in "iu" and not np.isfinite(a).all():
                    continue
                got, want = [], []
                codec.put(got, a, dt, hint)
                reference_put(want, a, dt, hint)
            assert b"".join(got) == b"".join(want), (hint, dt)
    with pytest.raises(ValueError, match="unknown array hint"):
        codec.put([], np.zeros(2), "<f8", "nope")
