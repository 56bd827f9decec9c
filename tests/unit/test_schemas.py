"""schemas/: the committed JSON Schema files are exactly what the models generate."""

from __future__ import annotations

from schemas.generate import JSON_DIR, json_schemas


def test_committed_json_schemas_are_generated():
    generated = json_schemas()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in JSON_DIR.glob("*.json")}
    assert on_disk == generated, "run `roadsense schemas` to regenerate schemas/json"


def test_frame_schema_names_the_contract_fields():
    import json

    frame = json.loads(json_schemas()["vehicle-frame.schema.json"])
    assert {"schema_version", "vehicle_id", "seq", "t_s", "speed_kmh"} <= set(frame["required"])
    row = json.loads(json_schemas()["trace-row.schema.json"])
    assert "Vehicle.Acceleration.Vertical" in row["properties"]
