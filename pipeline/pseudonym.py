"""Vehicle pseudonyms: keyed HMAC-SHA256 of the raw id (GDPR art. 4(5) pseudonymisation).

The raw id (a VIN) never leaves the first stage: every record, table key and database row
carries the pseudonym. Without the key the pseudonym cannot be linked back to the VIN;
rotating the key (e.g. yearly) unlinks old and new data.
"""

from __future__ import annotations

import hashlib
import hmac

from schemas._errors import RoadsenseError

__all__ = ["Pseudonymiser", "MIN_KEY_LENGTH"]

MIN_KEY_LENGTH = 32


class Pseudonymiser:
    """``Pseudonymiser(key)(vehicle_id) -> 32 hex chars``; deterministic for one key."""

    __slots__ = ("_key",)

    def __init__(self, key: str | bytes) -> None:
        raw = key.encode() if isinstance(key, str) else bytes(key)
        if len(raw) < MIN_KEY_LENGTH:
            raise RoadsenseError(
                f"pseudonym key too short ({len(raw)} bytes, need {MIN_KEY_LENGTH}): "
                "set ROADSENSE_PSEUDONYM_KEY to a long random secret"
            )
        self._key = raw

    def __call__(self, vehicle_id: str) -> str:
        return hmac.new(self._key, vehicle_id.encode(), hashlib.sha256).hexdigest()[:32]

    def __repr__(self) -> str:
        return "Pseudonymiser(key=***)"
