"""The Kafka frame message in CBOR: the same document as a JSON frame, numbers in binary.

A JSON frame costs its reader one Python float per sample, parsed, validated, then copied
into an array (~0.35 ms of a worker's ~2.3 ms per 10 s frame). A CBOR frame (RFC 8949) is
the JSON frame's document, field for field, in which any array of numbers may be an RFC 8746
typed array: the reader takes it as one NumPy array, and checks it as a whole.

Layout: the self-described CBOR tag (55799; its bytes ``D9 D9 F7`` tell a CBOR frame from a
JSON one, which starts with ``{``) on a map with the keys and rules of
``schemas/json/vehicle-frame.schema.json``. An array field may be a plain CBOR array, as in
JSON, or a typed array: tag 86 (float64, little-endian) for number fields, tag 64 (uint8,
0 or 1) for ``abs_engaged``. In a typed array of a field whose elements may be null
(``brake_pedal_pct``, ``fix_heading_deg``, ``fix_accuracy_m``) NaN stands for null; anywhere
else NaN is refused, as in JSON. ``schemas/json/vehicle-frame.cbor.json`` lists the fields
and tags, generated from :class:`schemas.frame.Frame`.

The checks are the model's: field and element bounds are read from its annotations and
applied to whole arrays, the scalar fields go through the model's own fields. When a frame
fails a check, or holds a plain array, the model itself validates it, so that a bad frame
gets the reason a JSON frame would get (``docs/decisions.md``, "CBOR frames").
"""

from __future__ import annotations

import io
import math
import sys
import types
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin

import annotated_types
import cbor2
import numba
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from schemas._errors import SchemaError
from schemas.frame import CBOR_MAGIC, FRAME_SCHEMA_VERSION, Frame, FrameArrays, readable_error

__all__ = ["CBOR_MAGIC", "CBOR_TYPED_ARRAYS", "cbor_frame_layout", "compile_kernels", "decode_frame_cbor",
           "encode_frame_cbor"]

_SELF_DESCRIBED = 55799
_TAG_F64 = 86  # RFC 8746: float64, little-endian
_TAG_U8 = 64  # RFC 8746: uint8


def _strip_optional(ann: Any) -> tuple[Any, bool]:
    if get_origin(ann) in (Union, types.UnionType) and type(None) in get_args(ann):
        (inner,) = [a for a in get_args(ann) if a is not type(None)]
        return inner, True
    return ann, False


class _Column:
    """An array field of the model: its typed-array tag, whether it and its elements may be
    null, and its elements' bounds."""

    def __init__(self, name: str, ann: Any) -> None:
        self.name = name
        self.required = Frame.model_fields[name].is_required()
        ann, self.optional = _strip_optional(ann)
        (el,) = get_args(ann)
        el, self.null_elements = _strip_optional(el)
        base, meta = (get_args(el)[0], getattr(el, "__metadata__", ())) if hasattr(el, "__metadata__") else (el, ())
        meta = [m for e in meta for m in getattr(e, "metadata", [e])]
        if base is float:
            self.tag, self.dtype = _TAG_F64, np.dtype("<f8")
        elif base is bool:
            self.tag, self.dtype = _TAG_U8, np.dtype("u1")
        else:  # pragma: no cover - the model has no other array fields
            raise TypeError(f"no typed array for {name}: list[{base}]")
        self.ge = next((m.ge for m in meta if isinstance(m, annotated_types.Ge)), None)
        self.le = next((m.le for m in meta if isinstance(m, annotated_types.Le)), None)
        self.finite = base is float and any(getattr(m, "allow_inf_nan", True) is False for m in meta)
        # the kernel's form of valid(): NaN fails where it is not null and min/max would
        # have compared it; an absent bound is one no number fails
        self._nan_fails = not self.null_elements and (self.finite or self.ge is not None or self.le is not None)
        self._lo = -math.inf if self.ge is None else float(self.ge)
        self._hi = math.inf if self.le is None else float(self.le)
        if self.finite:  # +-inf fall outside
            self._lo, self._hi = max(self._lo, -sys.float_info.max), min(self._hi, sys.float_info.max)
        self._increasing = name in ("t_s", "fix_t_s")  # what _consistent asks of the times

    def read_checked(self, tag: cbor2.CBORTag) -> tuple[np.ndarray, bool] | None:
        """(values, strictly increasing) of a typed array whose every element passes
        :meth:`valid`, as the decoded frame holds them (float64, or bool for ``abs_engaged``);
        None for anything else (the reference path then gives the reason). One compiled
        pass copies and checks; the same result as :meth:`read`, :meth:`valid` and
        ``_consistent``'s ``np.diff(values) > 0`` (``tests/unit/test_frame_cbor.py``)."""
        raw = tag.value
        if tag.tag != self.tag or type(raw) is not bytes:
            return None
        if self.tag == _TAG_U8:
            out = np.empty(len(raw), np.bool_)
            return (out, True) if _read_u8(np.frombuffer(raw, np.uint8), out) else None
        n, odd = divmod(len(raw), 8)
        if odd:
            return None
        out = np.empty(n, np.float64)
        ok, increasing = _read_f64(np.frombuffer(raw, np.float64), out, self._lo, self._hi, self._nan_fails,
                                   self._increasing)
        return (out, increasing) if ok else None

    def read(self, tag: cbor2.CBORTag) -> np.ndarray:
        """The typed array's values (float64 or uint8), the reader's own copy."""
        if tag.tag != self.tag or not isinstance(tag.value, bytes):
            raise SchemaError(f"{self.name}: CBOR tag {tag.tag}, expected a typed array with tag {self.tag} "
                              f"({'float64, little-endian' if self.tag == _TAG_F64 else 'uint8'})")
        if len(tag.value) % self.dtype.itemsize:
            raise SchemaError(f"{self.name}: typed array of {len(tag.value)} bytes, not a whole number of "
                              f"{self.dtype.itemsize}-byte values")
        return np.frombuffer(tag.value, self.dtype).astype(self.dtype.newbyteorder("="))

    def valid(self, values: np.ndarray) -> bool:
        """Whether every element passes the model's element checks (vectorised)."""
        if values.size == 0:
            return True
        if self.tag == _TAG_U8:
            return bool(values.max() <= 1)  # 0 or 1, as the model's bool takes
        if self.null_elements:  # NaN is null here: fmin and fmax skip it
            lo, hi = float(np.fmin.reduce(values)), float(np.fmax.reduce(values))
            if lo != lo:
                return True  # all null
        else:  # NaN propagates into min and max: two reductions check finiteness and bounds
            lo, hi = float(values.min()), float(values.max())
        if self.finite and not (np.isfinite(lo) and np.isfinite(hi)):
            return False
        return (self.ge is None or lo >= self.ge) and (self.le is None or hi <= self.le)

    def as_list(self, values: np.ndarray) -> list:
        """The array as the list a JSON frame would hold (None where NaN means null)."""
        out = values.tolist()
        if self.null_elements:
            out = [None if x != x else x for x in out]
        return out


@numba.njit(cache=True, error_model="numpy")
def _read_f64(src: np.ndarray, out: np.ndarray, lo: float, hi: float, nan_fails: bool,
              increasing: bool) -> tuple[bool, bool]:
    # copy, then (every element in [lo, hi] or a NaN that does not fail, strictly
    # increasing if asked): branch-free loops, which LLVM vectorises
    n = src.size
    for i in range(n):
        out[i] = src[i]
    ok = True
    if nan_fails:  # NaN fails both comparisons
        good = 0
        for i in range(n):
            good += (out[i] >= lo) & (out[i] <= hi)
        ok = good == n
    else:  # NaN passes both
        bad = 0
        for i in range(n):
            bad += (out[i] < lo) | (out[i] > hi)
        ok = bad == 0
    if not increasing:
        return ok, True
    down = 0
    for i in range(n - 1):
        down += not out[i + 1] - out[i] > 0  # np.diff's subtraction: NaN fails
    return ok, down == 0


@numba.njit(cache=True, error_model="numpy")
def _read_u8(src: np.ndarray, out: np.ndarray) -> bool:
    # 0/1 bytes as bools, and whether every byte is 0 or 1
    good = 0
    for i in range(src.size):
        good += src[i] <= 1
    for i in range(src.size):
        out[i] = src[i] != 0
    return good == src.size


_COLUMNS: dict[str, _Column] = {
    name: _Column(name, info.annotation)
    for name, info in Frame.model_fields.items()
    if get_origin(_strip_optional(info.annotation)[0]) is list
}
CBOR_TYPED_ARRAYS: dict[str, int] = {c.name: c.tag for c in _COLUMNS.values()}
"""The fields that may be typed arrays, and the tag each takes."""
_LITTLE_ENDIAN = sys.byteorder == "little"
_SAMPLES = [n for n in _COLUMNS if not n.startswith("fix_")]
_FIXES = [n for n in _COLUMNS if n.startswith("fix_")]



def cbor_frame_layout() -> dict:
    """The CBOR form of a frame as a document for producers in other languages
    (``schemas/json/vehicle-frame.cbor.json``)."""
    kinds = {_TAG_F64: "float64, little-endian (RFC 8746)", _TAG_U8: "uint8, 0 or 1 (RFC 8746)"}
    return {
        "title": "vehicle-frame, CBOR (RFC 8949)",
        "description": "The self-described CBOR tag 55799 (bytes D9 D9 F7) on a map with the keys and rules "
                       "of vehicle-frame.schema.json. An array field may be a plain CBOR array or the typed "
                       "array listed here; in a typed array of a field whose elements may be null, NaN is null.",
        "self_described_tag": _SELF_DESCRIBED,
        "typed_arrays": {c.name: {"tag": c.tag, "values": kinds[c.tag], "nan_is_null": c.null_elements}
                         for c in _COLUMNS.values()},
    }


# the model's scalar fields alone: validates a frame's header as the whole model would
_Header: type[BaseModel] = create_model(
    "FrameHeader",
    __config__=ConfigDict(extra="forbid"),
    **{n: (f.annotation, f) for n, f in Frame.model_fields.items() if n not in _COLUMNS},
)


def encode_frame_cbor(frame: Frame | Mapping[str, Any]) -> bytes:
    """CBOR bytes of a frame, every array a typed array (the inverse of
    :func:`decode_frame_cbor`). Also takes a mapping, for tests of bad input: its arrays
    that are not all numbers (or null where allowed) stay plain arrays."""
    if isinstance(frame, Frame):
        doc = frame.model_dump(exclude_none=True)
        for name, col in _COLUMNS.items():
            if name in doc:  # None -> NaN where elements may be null
                doc[name] = cbor2.CBORTag(col.tag, np.asarray(doc[name], col.dtype).tobytes())
    else:
        doc = dict(frame)
        for name, col in _COLUMNS.items():
            v = doc.get(name)
            if not isinstance(v, list):
                continue
            if col.tag == _TAG_U8 and all(type(x) is bool for x in v):
                doc[name] = cbor2.CBORTag(_TAG_U8, np.asarray(v, np.uint8).tobytes())
            elif col.tag == _TAG_F64 and all(type(x) in (float, int) or (x is None and col.null_elements) for x in v):
                doc[name] = cbor2.CBORTag(_TAG_F64, np.asarray(v, col.dtype).tobytes())
    return cbor2.dumps(cbor2.CBORTag(_SELF_DESCRIBED, doc))


def decode_frame_cbor(raw: bytes) -> FrameArrays:
    """Validate one CBOR frame and return it as arrays.

    Raises
    ------
    SchemaError
        Not CBOR, not one map, a typed array of the wrong tag or length, an unknown schema
        version, or any check of :class:`schemas.frame.Frame` failing (the reason is the
        model's own).
    """
    doc = _document(raw)
    frame = _typed(doc)
    # anything else (a plain array, a check failing, a typed array of the wrong tag or
    # length) takes the reference path, which gives the reason
    return _from_document(doc) if frame is None else frame


def _document(raw: bytes) -> Mapping:
    """The frame's map, checked as CBOR: its keys text, its schema version this worker's."""
    fp = io.BytesIO(raw)
    try:
        doc = cbor2.CBORDecoder(fp).decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise SchemaError(f"not a CBOR frame: {exc}") from None
    if fp.tell() != len(raw):
        raise SchemaError(f"not a CBOR frame: {len(raw) - fp.tell()} bytes after the frame's map")
    if isinstance(doc, cbor2.CBORTag) and doc.tag == _SELF_DESCRIBED:  # the tag twice: once is enough
        doc = doc.value
    if not isinstance(doc, Mapping):
        raise SchemaError(f"not a CBOR map but {type(doc).__name__}")
    if not all(isinstance(k, str) for k in doc):
        raise SchemaError("a CBOR frame's keys are text strings")
    version = doc.get("schema_version")
    if version != FRAME_SCHEMA_VERSION:
        raise SchemaError(f"unknown schema_version {version!r} (this worker reads {FRAME_SCHEMA_VERSION})")
    return doc


def _typed(doc: Mapping) -> FrameArrays | None:
    """The frame of a document whose every array present is a typed array that passes the
    model's checks, each read and checked in one compiled pass; None for any other
    document. Returns what :func:`_from_document` returns for such a document
    (``tests/unit/test_frame_cbor.py`` keeps that as the oracle)."""
    if not _LITTLE_ENDIAN:  # pragma: no cover - the kernels read the bytes as native
        return None
    arrays: dict[str, np.ndarray | None] = {}
    increasing: dict[str, bool] = {}
    for name, col in _COLUMNS.items():
        v = doc.get(name)
        if type(v) is cbor2.CBORTag:
            got = col.read_checked(v)
            if got is None:
                return None
            arrays[name], increasing[name] = got
        elif v is None and (col.optional if name in doc else not col.required):
            arrays[name] = None
        else:  # a plain array, or null (absent) where the model wants a list
            return None
    if not _consistent(arrays, increasing):
        return None
    head = _header({key: v for key, v in doc.items() if key not in _COLUMNS})
    return _frame_arrays(head, arrays, arrays["abs_engaged"])


def _header(header: dict) -> BaseModel:
    try:
        return _Header.model_validate(header)
    except ValidationError as exc:
        raise SchemaError(readable_error(exc)) from None


def _frame_arrays(head: BaseModel, arrays: dict[str, np.ndarray | None],
                  abs_engaged: np.ndarray | None) -> FrameArrays:
    # an absent fix array is empty, as from_model gives it
    fix = {n: np.zeros(0) if arrays[n] is None else arrays[n]
           for n in ("fix_t_s", "fix_lat_deg", "fix_lon_deg")}
    return FrameArrays(
        vehicle_id=head.vehicle_id, seq=head.seq, trip_end=head.trip_end,
        t_s=arrays["t_s"], speed_kmh=arrays["speed_kmh"], accel_long_mps2=arrays["accel_long_mps2"],
        accel_lat_mps2=arrays["accel_lat_mps2"], accel_vert_mps2=arrays["accel_vert_mps2"],
        brake_pedal_pct=arrays["brake_pedal_pct"], abs_engaged=abs_engaged,
        fix_t_s=fix["fix_t_s"], fix_lat_deg=fix["fix_lat_deg"], fix_lon_deg=fix["fix_lon_deg"], fix_heading_deg=arrays["fix_heading_deg"],
        fix_accuracy_m=arrays["fix_accuracy_m"], powertrain=head.powertrain, soc_pct=head.soc_pct,
        model_year=head.model_year,
    )  # fmt: skip


def _from_document(doc: Mapping) -> FrameArrays:
    """The frame of a checked document, or the model's reason it is not one: the reference
    path (each column read, then checked as a whole; the model validates whatever fails)."""
    header = {k: v for k, v in doc.items() if k not in _COLUMNS}
    arrays: dict[str, np.ndarray | None] = {}
    plain: dict[str, Any] = {}
    ok = True
    for name, col in _COLUMNS.items():
        v = doc.get(name)
        if isinstance(v, cbor2.CBORTag):
            arrays[name] = a = col.read(v)
            ok = ok and col.valid(a)
        else:  # absent, null or a plain array: the model decides
            arrays[name] = None
            if name in doc:
                plain[name] = list(v) if isinstance(v, (list, tuple)) else v
                ok = ok and v is None and col.optional
            else:
                ok = ok and not col.required
    if ok and _consistent(arrays):
        head = _header(header)
    else:
        # a plain array, or a check failed: the model validates the whole document and
        # gives the reason a JSON frame would get
        full = {**header, **plain, **{n: _COLUMNS[n].as_list(a) for n, a in arrays.items() if a is not None}}
        try:
            return FrameArrays.from_model(Frame.model_validate(full))
        except ValidationError as exc:
            raise SchemaError(readable_error(exc)) from None
    abs_engaged = arrays["abs_engaged"]
    return _frame_arrays(head, arrays, None if abs_engaged is None else abs_engaged.astype(bool))


def _consistent(arrays: dict[str, np.ndarray | None], increasing: dict[str, bool] | None = None) -> bool:
    """The model's cross-field checks, vectorised: a first sample, equal lengths, times
    strictly increasing (``increasing``: the readers' answers for ``t_s`` and ``fix_t_s``,
    else computed here)."""
    t, ft = arrays["t_s"], arrays["fix_t_s"]
    if t is None or t.size < 1:
        return False
    if any(arrays[n] is not None and arrays[n].size != t.size for n in _SAMPLES):
        return False
    k = 0 if ft is None else ft.size
    if any(arrays[n] is not None and arrays[n].size != k for n in _FIXES):
        return False
    if increasing is not None:
        return increasing["t_s"] and (k < 2 or increasing["fix_t_s"])
    return bool((np.diff(t) > 0).all() and (k < 2 or (np.diff(ft) > 0).all()))


def compile_kernels() -> None:
    """Compile the typed-array readers (or load them from numba's cache) for the read-only
    arrays over a message's bytes they are given, so that no frame waits for them."""
    _read_f64(np.frombuffer(bytes(16), np.float64), np.empty(2), 0.0, 1.0, True, True)
    _read_u8(np.frombuffer(bytes(2), np.uint8), np.empty(2, np.bool_))
