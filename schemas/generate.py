"""JSON Schema files for outside consumers, generated from the pydantic models (and the
CBOR layout of a frame, generated from the frame model).

``roadsense schemas`` (or ``python -m schemas.generate``) rewrites ``schemas/json/``; a unit
test fails when the committed files differ from what the models generate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas.frame import Frame
from schemas.frame_cbor import cbor_frame_layout
from schemas.records import DeadLetter, HarshEvent, PassImpact, RoadAlert, SegmentPass
from schemas.trace import TraceRow

__all__ = ["MODELS", "json_schemas", "write_json_schemas", "JSON_DIR"]

JSON_DIR = Path(__file__).resolve().parent / "json"
MODELS = {
    "trace-row": TraceRow,
    "vehicle-frame": Frame,
    "segment-pass": SegmentPass,
    "harsh-event": HarshEvent,
    "dead-letter": DeadLetter,
    "pass-impact": PassImpact,
    "road-alert": RoadAlert,
}


def json_schemas() -> dict[str, str]:
    """File name -> JSON text, deterministic (sorted keys, trailing newline)."""
    out = {}
    for name, model in MODELS.items():
        schema = model.model_json_schema(by_alias=True, mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://roadsense.example/schemas/{name}.schema.json"
        out[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    out["vehicle-frame.cbor.json"] = json.dumps(cbor_frame_layout(), indent=2, ensure_ascii=False) + "\n"
    return out


def write_json_schemas(out_dir: str | Path = JSON_DIR) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in json_schemas().items():
        p = out / name
        p.write_text(text, encoding="utf-8")
        written.append(p)
    return written


if __name__ == "__main__":
    for p in write_json_schemas(sys.argv[1] if len(sys.argv) > 1 else JSON_DIR):
        print(p)
