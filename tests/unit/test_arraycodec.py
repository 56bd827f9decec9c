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
